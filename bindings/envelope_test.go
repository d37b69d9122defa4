package bindings

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

func TestWrapMeta(t *testing.T) {
	m := Meta{OperationID: "op-1"}
	for payload, want := range map[string]string{
		`{"id":7}`:          `{"$jobhost":{"operationId":"op-1"},"id":7}`,
		` { "id" : 7 } `:    ` {"$jobhost":{"operationId":"op-1"}, "id" : 7 } `,
		`{}`:                `{"$jobhost":{"operationId":"op-1"}}`,
		"{ \n}":             "{\"$jobhost\":{\"operationId\":\"op-1\"} \n}",
		`[1,2]`:             `{"$jobhost":{"operationId":"op-1"},"$value":[1,2]}`,
		`"text"`:            `{"$jobhost":{"operationId":"op-1"},"$value":"text"}`,
		`null`:              `{"$jobhost":{"operationId":"op-1"},"$value":null}`,
		`{"$value":1}`:      `{"$jobhost":{"operationId":"op-1"},"$value":{"$value":1}}`,
		`{"$jobhost":1}`:    `{"$jobhost":{"operationId":"op-1"},"$jobhost":1}`,
		"\ufeff{\"id\":7}":  `{"$jobhost":{"operationId":"op-1"},"id":7}`,
		`{"\u0024value":1}`: `{"$jobhost":{"operationId":"op-1"},"\u0024value":1}`,
	} {
		got, err := WrapMeta([]byte(payload), m)
		if err != nil || string(got) != want {
			t.Errorf("WrapMeta(%q) = %q, %v; want %q", payload, got, err, want)
			continue
		}
		if !json.Valid(got) {
			t.Errorf("WrapMeta(%q) = %q: not JSON", payload, got)
		}
		gm, rest, ok, err := SplitMeta(got)
		orig := string(bytes.TrimPrefix([]byte(payload), bom))
		if !ok || err != nil || gm != m || string(rest) != orig {
			t.Errorf("SplitMeta(%q) = %+v %q %v %v; want the meta and %q", got, gm, rest, ok, err, orig)
		}
	}
	if _, err := WrapMeta([]byte("not json"), m); !errors.Is(err, ErrNotJSON) {
		t.Errorf("non-JSON payload: %v", err)
	}
}

func TestSplitMetaWithout(t *testing.T) {
	for _, p := range []string{``, `{"id":7}`, `[1]`, `{ "$jobhost" : {}}`, "plain text", `{"$jobhos":1}`} {
		m, rest, ok, err := SplitMeta([]byte(p))
		if ok || err != nil || !m.IsZero() || string(rest) != p {
			t.Errorf("SplitMeta(%q) = %+v %q %v %v; want it untouched", p, m, rest, ok, err)
		}
	}
	// Written by hand, with spaces and unknown metadata members.
	m, rest, ok, err := SplitMeta([]byte("\ufeff {\"$jobhost\": {\"operationId\":\"x\",\"future\":[{}]} , \"$value\" : [1] }"))
	if !ok || err != nil || m.OperationID != "x" || string(rest) != " [1] " {
		t.Errorf("hand-written: %+v %q %v %v", m, rest, ok, err)
	}
	for _, p := range []string{`{"$jobhost":`, `{"$jobhost":1}`, `{"$jobhost":{"operationId":1}}`, `{"$jobhost":{}`,
		`{"$jobhost":{} x`, `{"$jobhost":{},"$value":}`, `{"$jobhost":{},"$value"1}`, `{"$jobhost":{"a":"}"`} {
		if _, rest, ok, err := SplitMeta([]byte(p)); !ok || err == nil || string(rest) != p {
			t.Errorf("SplitMeta(%q): ok %v err %v; want ok and an error", p, ok, err)
		} else if be := (*Error)(nil); !errors.As(err, &be) {
			t.Errorf("SplitMeta(%q): %T, want a *bindings.Error (the message cannot be bound)", p, err)
		}
	}
}

func TestMetaProps(t *testing.T) {
	if p := MetaToProps(Meta{}, nil); p != nil {
		t.Errorf("zero meta made %v", p)
	}
	m := Meta{OperationID: "op", TraceParent: "00-abc-def-01", TraceState: "k=v"}
	p := MetaToProps(m, map[string]string{"other": "1"})
	if len(p) != 4 || p[PropOperationID] != "op" || p["other"] != "1" {
		t.Errorf("props %v", p)
	}
	if got := MetaFromProps(p); got != m {
		t.Errorf("MetaFromProps = %+v", got)
	}
	if got := MetaFromProps(map[string]string{"Jobhost-Operation-Id": "op"}); got.OperationID != "op" {
		t.Errorf("case-insensitive: %+v", got)
	}
	if !MetaFromProps(nil).IsZero() || m.IsZero() {
		t.Error("IsZero")
	}
}

func FuzzMetaEnvelope(f *testing.F) {
	for _, s := range []string{`{"id":7}`, `{}`, ` { } `, `[1]`, `"s"`, `1`, `null`, `{"$value":1}`, ` {"$value" :2}`,
		`{"$jobhost":{"operationId":"a"},"x":1}`, `{"$jobhost":{"operationId":"a"},"$value":3}`, "{\"$jobhost\":{\"a\":\"\\\"}\"}}", "\ufeff{}"} {
		f.Add([]byte(s), "op-1")
	}
	f.Fuzz(func(t *testing.T, p []byte, id string) {
		// Whatever the input, SplitMeta does not panic and, without an
		// envelope, gives the payload back.
		if _, rest, ok, err := SplitMeta(p); !ok && (err != nil || !bytes.Equal(rest, p)) {
			t.Fatalf("SplitMeta(%q) without an envelope changed it: %q %v", p, rest, err)
		}
		if !json.Valid(p) {
			return
		}
		m := Meta{OperationID: id}
		w, err := WrapMeta(p, m)
		if err != nil {
			t.Fatalf("WrapMeta(%q): %v", p, err)
		}
		if !json.Valid(w) {
			t.Fatalf("WrapMeta(%q) = %q: not JSON", p, w)
		}
		gm, rest, ok, err := SplitMeta(w)
		if !ok || err != nil || !bytes.Equal(rest, p) {
			t.Fatalf("SplitMeta(WrapMeta(%q)) = %q %v %v; want the payload", p, rest, ok, err)
		}
		if utf8.ValidString(id) && gm != m {
			t.Fatalf("meta %+v, want %+v", gm, m)
		}
	})
}
