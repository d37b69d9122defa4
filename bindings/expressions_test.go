package bindings

import (
	"strings"
	"testing"
	"time"
)

func TestExpressions(t *testing.T) {
	d := &Data{Payload: []byte(`{"siteUrl": "contoso", "order": {"region": "EU", "n": 3}, "ok": true}`), ID: "m-1",
		DequeueCount: 2, Now: time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)}
	for in, want := range map[string]string{
		"results":                         "results",
		"out-{siteUrl}":                   "out-contoso",
		"{order.region}-{order.n}-{ok}":   "EU-3-true",
		"{ORDER.Region}":                  "EU",
		"m-{id}-{dequeueCount}":           "m-m-1-2",
		"{datetime}":                      "2026-11-22T01-02-03Z",
		"{{literal}}":                     "{literal}",
		"rabbit://results-{order.region}": "rabbit://results-EU",
	} {
		e, err := ParseExpression(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		got, err := e.Resolve(d)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", in, got, err, want)
		}
	}
	e, _ := ParseExpression("{rand-guid}")
	a, _ := e.Resolve(d)
	b, _ := e.Resolve(d)
	if len(a) != 36 || a == b {
		t.Errorf("rand-guid %q %q", a, b)
	}
	if s, ok := mustParse(t, "plain").Static(); !ok || s != "plain" {
		t.Error("static")
	}
	if _, ok := mustParse(t, "a-{id}").Static(); ok {
		t.Error("not static")
	}
}

func TestExpressionErrors(t *testing.T) {
	for _, in := range []string{"{", "a{}", "b}", "{x"} {
		if _, err := ParseExpression(in); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
	d := &Data{Payload: []byte(`{"a": {"b": 1}, "n": null}`)}
	for _, in := range []string{"{missing}", "{a}", "{a.c}", "{n}"} {
		if _, err := mustParse(t, in).Resolve(d); err == nil {
			t.Errorf("%s resolved", in)
		}
	}
	if _, err := mustParse(t, "{x}").Resolve(&Data{Payload: []byte("plain text")}); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("got %v", err)
	}
	if got, _ := mustParse(t, "{queueTrigger}").Resolve(&Data{Payload: []byte("plain text")}); got != "plain text" {
		t.Errorf("queueTrigger %q", got)
	}
}

func mustParse(t *testing.T, s string) Expression {
	t.Helper()
	e, err := ParseExpression(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestExpressionAfterBOM: JSON properties are found in a payload that starts
// with a UTF-8 byte-order mark, as the JSON binder finds them.
func TestExpressionAfterBOM(t *testing.T) {
	d := &Data{Payload: []byte("\xef\xbb\xbf" + `{"region": "EU"}`)}
	if got, err := mustParse(t, "out-{region}").Resolve(d); err != nil || got != "out-EU" {
		t.Errorf("got %q, %v", got, err)
	}
}
