package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

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

// FuzzRequest: any request — method, path, query, headers, body — gets an
// answer, never a panic or a 500, and every 4xx is the JSON error shape.
func FuzzRequest(f *testing.F) {
	f.Add("POST", "/api/operations/Provision", "", "application/json", "", "", `{"title":"x"}`)
	f.Add("POST", "/api/operations/Provision", "callbackUrl=http%3A%2F%2Fh", "application/json; charset=utf-8", "wait=1", "k1", `{"a":`)
	f.Add("GET", "/api/operations", "status=Failed,30&limit=0&since=x", "", "", "", "")
	f.Add("DELETE", "/api/operations/%00", "", "", "", "", "")
	f.Add("PUT", "/api/operations/a/b/c", "code=", "text/plain", "respond-async", "\x7f", "\xff")
	f.Fuzz(func(t *testing.T, method, path, query, ctype, prefer, idem, body string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#") {
			return
		}
		h, err := New(Options{Operations: newFake("Provision"), MaxWait: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1234"
		for k, v := range map[string]string{"Content-Type": ctype, "Prefer": prefer, "Idempotency-Key": idem} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s: %d %s", method, target, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s: %d with a body that is not the error shape: %s", method, target, w.Code, w.Body)
			}
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
