package functions

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers"
)

type zip struct {
	Code int `json:"code"`
}

type address struct {
	Street string `json:"street"`
	Zip    zip    `json:"zip"`
}

type Embedded struct {
	Note string `json:"note"`
}

type customer struct {
	Embedded
	Name    string          `json:"name"`
	Address address         `json:"address"`
	Tags    map[string]zip  `json:"tags"`
	Items   []address       `json:"items"`
	Raw     json.RawMessage `json:"raw"`
	Any     any             `json:"any"`
	Skipped string          `json:"-"`
}

func TestRefs(t *testing.T) {
	r := &Registry{}
	h := func(context.Context, customer, *triggers.Message) error { return nil }
	ref := Add(r, "Customers", QueueTrigger("q"), h)
	var _ Ref[customer] = ref // the type carries the argument
	if ref.Name() != "Customers" || NewRef[customer]("x").Name() != "x" {
		t.Errorf("names %q", ref.Name())
	}
	res := AddResult(r, "Results", QueueTrigger("q"), "", func(context.Context, string, *triggers.Message) (int, error) { return 1, nil })
	if res.Name() != "Results" {
		t.Errorf("AddResult's Ref %q", res.Name())
	}
	// A registration problem still returns the name's Ref.
	if dup := Add(r, "customers", QueueTrigger("q"), h); dup.Name() != "customers" || len(r.Problems()) != 1 {
		t.Errorf("duplicate: %q %v", dup.Name(), r.Problems())
	}
}

func TestValidate(t *testing.T) {
	r := &Registry{}
	Add(r, "C", QueueTrigger("q"), func(context.Context, customer, *triggers.Message) error { return nil })
	Add(r, "S", QueueTrigger("q"), func(context.Context, string, *triggers.Message) error { return nil })
	Add(r, "R", QueueTrigger("q"), func(context.Context, json.RawMessage, *triggers.Message) error { return nil })
	Add(r, "P", QueueTrigger("q"), func(context.Context, *zip, *triggers.Message) error { return nil })
	defs := map[string]*Definition{}
	for _, d := range r.Functions() {
		defs[d.Name] = d
	}
	for _, ok := range []string{`{}`, `{"name":"a","address":{"zip":{"code":1}},"note":"n","NAME":"b"}`,
		`{"tags":{"x":{"code":2}},"items":[{"street":"s"}],"raw":{"free":1},"any":{"free":[1]}}`, "\ufeff{}", `null`} {
		if err := defs["C"].Validate([]byte(ok)); err != nil {
			t.Errorf("C %s: %v", ok, err)
		}
	}
	for payload, want := range map[string][2]string{
		`{"name":1}`:                                {"name", "want a string"},
		`{"address":{"zip":{"code":"x"}}}`:          {"address.zip.code", "want an integer"},
		`{"address":{"zip":{"code":1,"plus4":2}}}`:  {"address.zip.plus4", "unknown field"},
		`{"extra":true}`:                            {"extra", "unknown field"},
		`{"tags":{"k":{"nope":1}}}`:                 {"tags.k.nope", "unknown field"},
		`{"items":[{"street":"a"},{"zap":1}]}`:      {"items.zap", "unknown field"},
		`{"Skipped":"x"}`:                           {"Skipped", "unknown field"},
		`{"raw":{"zap":1},"any":{"zap":1},"zap":1}`: {"zap", "unknown field"},
		`[1]`:                       {"", "want an object"},
		`{"name":"a"} {"name":"b"}`: {"", "data after"},
		`{"name":`:                  {"", "not valid JSON"},
		`{"name" "a"}`:              {"", "not valid JSON"},
		``:                          {"", "empty"},
	} {
		err := defs["C"].Validate([]byte(payload))
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != want[0] || !strings.Contains(ve.Reason, want[1]) {
			t.Errorf("C %s: %v; want field %q and %q", payload, err, want[0], want[1])
		}
	}
	if err := defs["S"].Validate([]byte("\xffanything")); err != nil {
		t.Errorf("string: %v", err)
	}
	if err := defs["R"].Validate([]byte(`{"any":1}`)); err != nil {
		t.Errorf("RawMessage: %v", err)
	}
	if err := defs["R"].Validate([]byte(`{nope`)); err == nil {
		t.Error("RawMessage took invalid JSON")
	}
	if err := defs["P"].Validate([]byte(`{"code":1,"x":1}`)); err == nil || !strings.Contains(err.Error(), "input field x") {
		t.Errorf("pointer: %v", err)
	}
	if err := (&Definition{}).Validate([]byte("x")); err != nil {
		t.Errorf("a Definition without a validator: %v", err)
	}
}

func TestEncode(t *testing.T) {
	for v, want := range map[any]string{"s": "s", 1: "1", zip{Code: 2}: `{"code":2}`} {
		if b, err := Encode(v); err != nil || string(b) != want {
			t.Errorf("Encode(%v) = %q %v", v, b, err)
		}
	}
	if _, err := Encode(func() {}); err == nil {
		t.Error("a func was encoded")
	}
}
