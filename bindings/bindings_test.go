package bindings

import (
	"encoding/json"
	"errors"
	"testing"
)

type order struct {
	ID    int    `json:"id"`
	Items []item `json:"items"`
}
type item struct{ SKU string }

func TestBinders(t *testing.T) {
	s, err := NewBinder[string]()([]byte("héllo"))
	if err != nil || s != "héllo" {
		t.Errorf("string: %q %v", s, err)
	}
	b, err := NewBinder[[]byte]()([]byte{0, 1, 2})
	if err != nil || len(b) != 3 {
		t.Errorf("[]byte: %v %v", b, err)
	}
	o, err := NewBinder[order]()([]byte(`{"id": 7, "items": [{"SKU": "a"}]}`))
	if err != nil || o.ID != 7 || o.Items[0].SKU != "a" {
		t.Errorf("struct: %+v %v", o, err)
	}
	p, err := NewBinder[*order]()([]byte(`{"id": 8}`))
	if err != nil || p.ID != 8 {
		t.Errorf("pointer: %+v %v", p, err)
	}
	raw, err := NewBinder[json.RawMessage]()([]byte(`[1,2]`))
	if err != nil || string(raw) != "[1,2]" {
		t.Errorf("raw: %s %v", raw, err)
	}
	m, err := NewBinder[map[string]any]()([]byte(`{"a":1}`))
	if err != nil || m["a"] != 1.0 {
		t.Errorf("map: %v %v", m, err)
	}
}

func TestBindErrors(t *testing.T) {
	for name, f := range map[string]func() error{
		"bad json":      func() error { _, err := NewBinder[order]()([]byte(`{"id": `)); return err },
		"wrong type":    func() error { _, err := NewBinder[order]()([]byte(`{"id": "seven"}`)); return err },
		"raw not json":  func() error { _, err := NewBinder[json.RawMessage]()([]byte(`nope`)); return err },
		"bad base64":    func() error { _, err := Base64.Decode([]byte("not base64!")); return err },
		"base64 of raw": func() error { _, err := Base64.Decode([]byte(`{"id":1}`)); return err },
	} {
		var be *Error
		if err := f(); !errors.As(err, &be) {
			t.Errorf("%s: want *bindings.Error, got %v", name, err)
		}
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	for _, e := range []Encoding{Base64, None} {
		in := []byte(`{"siteUrl":"https://contoso.sharepoint.com/sites/a","n":"ü"}`)
		out, err := e.Decode(e.Encode(in))
		if err != nil || string(out) != string(in) {
			t.Errorf("%s: %s %v", e, out, err)
		}
	}
	if got := string(Base64.Encode([]byte("hi"))); got != "aGk=" {
		t.Errorf("base64 = %q", got)
	}
	if _, err := ParseEncoding("BASE64"); err != nil {
		t.Error(err)
	}
	if _, err := ParseEncoding("utf8"); err == nil {
		t.Error("utf8 must be rejected")
	}
}

// FuzzBind: binding never panics, and a payload that binds re-encodes to
// something that binds to the same value.
func FuzzBind(f *testing.F) {
	f.Add([]byte(`{"id": 1, "items": [{"SKU": "x"}]}`))
	f.Add([]byte(`{"id": 1e400}`))
	f.Add([]byte(`eyJpZCI6IDF9`))
	f.Add([]byte{0xff, 0xfe})
	bind := NewBinder[order]()
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := Base64.Decode(data); err == nil {
			data = p
		}
		o, err := bind(data)
		if err != nil {
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("error is not a *bindings.Error: %v", err)
			}
			return
		}
		again, _ := json.Marshal(o)
		o2, err := bind(again)
		if err != nil || o2.ID != o.ID || len(o2.Items) != len(o.Items) {
			t.Fatalf("round trip: %+v -> %s -> %+v %v", o, again, o2, err)
		}
	})
}
