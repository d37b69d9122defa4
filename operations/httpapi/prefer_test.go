package httpapi

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePrefer(t *testing.T) {
	p := func(name, value string, params ...string) preference {
		pr := preference{Name: name, Value: value}
		for i := 0; i+1 < len(params); i += 2 {
			pr.Params = append(pr.Params, preferenceParam{Name: params[i], Value: params[i+1]})
		}
		return pr
	}
	for _, c := range []struct {
		headers []string
		want    []preference
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"respond-async"}, []preference{p("respond-async", "")}},
		{[]string{"Respond-Async, WAIT=10"}, []preference{p("respond-async", ""), p("wait", "10")}},
		{[]string{"respond-async", "wait=5"}, []preference{p("respond-async", ""), p("wait", "5")}},
		{[]string{` respond-async ,, wait = 5 , `}, []preference{p("respond-async", ""), p("wait", "5")}},
		{[]string{`respond-async, callback; url="https://h.example/cb?a=1,b=2;c"`},
			[]preference{p("respond-async", ""), p("callback", "", "url", "https://h.example/cb?a=1,b=2;c")}},
		{[]string{`callback; URL=https://h.example/cb`}, []preference{p("callback", "", "url", "https://h.example/cb")}},
		{[]string{`foo="a \"quoted\" \\ value"; ; bar ;baz=1`},
			[]preference{p("foo", `a "quoted" \ value`, "bar", "", "baz", "1")}},
		{[]string{`wait=""`}, []preference{p("wait", "")}},
		// Unreadable elements are skipped to the next comma outside quotes.
		{[]string{`=5, wait=3`}, []preference{p("wait", "3")}},
		{[]string{`a="unterminated, wait=3`}, nil},
		{[]string{`x y, wait=3`}, []preference{p("wait", "3")}},
		{[]string{`bad="q,q" junk, wait=4`}, []preference{p("wait", "4")}},
		{[]string{`a;=x, b`}, []preference{p("b", "")}},
		{[]string{`é, wait=1`}, []preference{p("wait", "1")}},
	} {
		got := parsePrefer(c.headers)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %+v, want %+v", c.headers, got, c.want)
		}
		if back := parsePrefer([]string{formatPreferences(got)}); !reflect.DeepEqual(back, got) {
			t.Errorf("%q: formatted as %q, read back as %+v", c.headers, formatPreferences(got), back)
		}
	}
}

func TestReadPreferences(t *testing.T) {
	for _, c := range []struct {
		headers []string
		want    preferences
	}{
		{[]string{"respond-async"}, preferences{RespondAsync: true}},
		{[]string{"wait=10"}, preferences{Wait: 10, HasWait: true}},
		{[]string{"wait=0"}, preferences{HasWait: true}},
		{[]string{"wait=soon"}, preferences{}},
		{[]string{"wait=-1"}, preferences{}},
		{[]string{"wait=1.5"}, preferences{}},
		{[]string{"wait=99999999999999999999999"}, preferences{Wait: maxWaitSeconds, HasWait: true}},
		// The first instance counts.
		{[]string{"wait=3", "wait=9"}, preferences{Wait: 3, HasWait: true}},
		{[]string{"wait=x, wait=9"}, preferences{}},
		{[]string{`respond-async, callback; url="https://h/cb"`}, preferences{RespondAsync: true, Callback: "https://h/cb", HasCallback: true}},
		{[]string{`callback`}, preferences{}},
		{[]string{`callback; url=""`}, preferences{}},
		{[]string{`return=Minimal, handling=lenient`}, preferences{Return: "minimal"}},
		{[]string{`return=everything`}, preferences{}},
	} {
		if got := readPreferences(c.headers); got != c.want {
			t.Errorf("%q: %+v, want %+v", c.headers, got, c.want)
		}
	}
}

func TestFormatPreferences(t *testing.T) {
	got := formatPreferences([]preference{
		{Name: "callback", Params: []preferenceParam{{Name: "url", Value: `https://h/x?a="b"`}}},
		{Name: "wait", Value: "10"},
	})
	if want := `callback; url="https://h/x?a=\"b\"", wait=10`; got != want {
		t.Errorf("%s, want %s", got, want)
	}
	if s := (applied{}).String(); s != "" || strings.TrimSpace(s) != s {
		t.Errorf("empty applied %q", s)
	}
}
