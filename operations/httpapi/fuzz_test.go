package httpapi

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/operations"
)

// FuzzPrefer: the Prefer parser never panics; what it reads is sensible
// (lower-case token names, waits within bounds) and survives being written
// and read again.
func FuzzPrefer(f *testing.F) {
	for _, s := range []string{
		"respond-async", "respond-async, wait=10", `respond-async, callback; url="https://h/cb?sig=x"`,
		`callback; url=https://h/cb`, `wait = 5 ;x; y="a\"b"`, `a="unterminated`, `=,;""\\`,
		"return=minimal, handling=strict", "WAIT=99999999999999999999", "é, wait=1",
	} {
		f.Add(s, "wait=3")
	}
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		headers := []string{h1, h2}
		prefs := parsePrefer(headers)
		for _, p := range prefs {
			if !isToken(p.Name) || strings.ToLower(p.Name) != p.Name {
				t.Fatalf("name %q", p.Name)
			}
			for _, q := range p.Params {
				if !isToken(q.Name) || strings.ToLower(q.Name) != q.Name {
					t.Fatalf("parameter name %q", q.Name)
				}
			}
		}
		formatted := formatPreferences(prefs)
		if back := parsePrefer([]string{formatted}); !reflect.DeepEqual(back, prefs) {
			t.Fatalf("%q: read %+v, written %q, read back %+v", headers, prefs, formatted, back)
		}
		got := readPreferences(headers)
		if got.Wait < 0 || got.Wait > maxWaitSeconds || (!got.HasWait && got.Wait != 0) {
			t.Fatalf("wait %+v", got)
		}
		if got.HasCallback != (got.Callback != "") {
			t.Fatalf("callback %+v", got)
		}
		if got.Return != "" && got.Return != "minimal" && got.Return != "representation" {
			t.Fatalf("return %q", got.Return)
		}
		if again := readPreferences([]string{formatted}); again != got {
			t.Fatalf("%q: %+v; written as %q, %+v", headers, got, formatted, again)
		}
	})
}

// FuzzListQuery: the list-query parser never panics, every error names a
// parameter, and what it reads is within bounds and survives being
// encoded (as nextLink is) and read again.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{
		"", "function=resize&status=Succeeded,31&state=Completed&since=2026-03-01T12:00:00+02:00&limit=10&cursor=abc",
		"status=0&status=InProgress", "state=Ready&status=Succeeded", "limit=1001", "%zz=1", "=x", "a=%",
		"code=k&runAs=a", "since=2026-03-01T12:00:00.123456789Z", "function=a&function=b", "status=%2C%2C",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseListQuery(raw)
		if err != nil {
			var pe *paramError
			if !errors.As(err, &pe) || pe.Param == "" || pe.Message == "" {
				t.Fatalf("%q: error %v names no parameter", raw, err)
			}
			return
		}
		if q.Limit < 0 || q.Limit > operations.MaxPage {
			t.Fatalf("limit %d", q.Limit)
		}
		if q.None != (q.Statuses != nil && len(q.Statuses) == 0) {
			t.Fatalf("none %+v", q)
		}
		for _, s := range q.Statuses {
			if _, err := operations.ParseStatus(s.String()); err != nil {
				t.Fatalf("status %v", s)
			}
		}
		enc := q.encode()
		back, err := parseListQuery(enc)
		if err != nil || !equalQuery(back, q) {
			t.Fatalf("%q: read %+v, encoded %q, read back %+v (%v)", raw, q, enc, back, err)
		}
		if strings.Contains("&"+enc, "&"+KeyParam+"=") {
			t.Fatalf("the key parameter is in %q", enc)
		}
	})
}
