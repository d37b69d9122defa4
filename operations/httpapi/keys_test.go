package httpapi

import (
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestKeysHeaderAndParam(t *testing.T) {
	e := newEnv(t, nil)
	wantStatus(t, e.do("POST", "/api/operations/resize", `{}`, KeyHeader, adminKey), 202)
	wantStatus(t, e.do("POST", "/api/operations/resize?code="+url.QueryEscape(adminKey), `{}`), 202)
	wantStatus(t, e.do("GET", "/api/operations?code="+url.QueryEscape(keyA), ""), 200)

	r := e.do("GET", "/api/operations", "")
	wantError(t, r, 401, "Unauthorized", KeyHeader)
	if r.header.Get("WWW-Authenticate") != "" {
		t.Error("401 with WWW-Authenticate")
	}
	wantError(t, e.do("GET", "/api/operations", "", KeyHeader, adminKey+"x"), 401, "Unauthorized", KeyHeader)
	wantError(t, e.do("GET", "/api/operations?code=nope", ""), 401, "Unauthorized", KeyParam)
	wantError(t, e.do("GET", "/api/operations?code=", ""), 401, "Unauthorized", KeyHeader)
	// The header wins: a wrong header is not rescued by a right parameter.
	wantError(t, e.do("GET", "/api/operations?code="+url.QueryEscape(adminKey), "", KeyHeader, "wrong"), 401, "Unauthorized", KeyHeader)
	// Even a local request needs a key once keys are configured.
	wantError(t, e.do("POST", "/api/operations/resize", `{}`), 401, "Unauthorized", KeyHeader)
}

func TestCallerIsolation(t *testing.T) {
	e := newEnv(t, nil)
	ra := e.do("POST", "/api/operations/resize", `{"by":"a"}`, KeyHeader, keyA)
	wantStatus(t, ra, 202)
	idA := ra.str("id")
	if s := e.fake.lastSubmission(); s.RunAs != "a" {
		t.Errorf("RunAs %q", s.RunAs)
	}
	idB := e.do("POST", "/api/operations/resize", `{"by":"b"}`, KeyHeader, keyB).str("id")
	idAdmin := e.submit("resize", `{}`)

	// b cannot see or cancel a's: 404, as for an unknown id.
	wantError(t, e.do("GET", "/api/operations/"+idA, "", KeyHeader, keyB), 404, "NotFound", "id")
	wantError(t, e.do("DELETE", "/api/operations/"+idA, "", KeyHeader, keyB), 404, "NotFound", "id")
	wantError(t, e.do("GET", "/api/operations/"+idAdmin, "", KeyHeader, keyA), 404, "NotFound", "id")
	if r := e.admin("GET", "/api/operations/"+idA, ""); r.str("statusName") != "WaitingForResources" || r.str("runAs") != "a" {
		t.Errorf("b's DELETE changed a's operation, or runAs is lost: %s", r.body)
	}
	r := e.do("GET", "/api/operations/"+idA, "", KeyHeader, keyA)
	wantStatus(t, r, 200)
	wantStatus(t, e.do("DELETE", "/api/operations/"+idA, "", KeyHeader, keyA), 200)

	ids := func(r *resp) []string {
		var out []string
		for _, rec := range r.obj["records"].([]any) {
			out = append(out, rec.(map[string]any)["id"].(string))
		}
		slices.Sort(out)
		return out
	}
	if got := ids(e.do("GET", "/api/operations", "", KeyHeader, keyB)); !slices.Equal(got, []string{idB}) {
		t.Errorf("b lists %v", got)
	}
	if q := e.fake.listed[len(e.fake.listed)-1]; q.RunAs == nil || *q.RunAs != "b" {
		t.Errorf("b's query %+v", q)
	}
	if got := ids(e.do("GET", "/api/operations?runAs=a", "", KeyHeader, keyB)); len(got) != 0 {
		t.Errorf("b lists a's: %v", got)
	}
	want := []string{idA, idB, idAdmin}
	slices.Sort(want)
	if got := ids(e.admin("GET", "/api/operations", "")); !slices.Equal(got, want) {
		t.Errorf("the admin lists %v", got)
	}
	if got := ids(e.admin("GET", "/api/operations?runAs=a", "")); !slices.Equal(got, []string{idA}) {
		t.Errorf("the admin lists a's as %v", got)
	}
	// The admin cancels anyone's.
	wantStatus(t, e.admin("DELETE", "/api/operations/"+idB, ""), 200)
}

func TestLoopbackOnlyWithoutKeys(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Keys = Keys{} })
	r := e.do("POST", "/api/operations/resize", `{}`) // from 127.0.0.1
	wantStatus(t, r, 202)
	if s := e.fake.lastSubmission(); s.RunAs != "" {
		t.Errorf("RunAs %q", s.RunAs)
	}
	wantStatus(t, e.do("GET", "/api/operations/"+r.str("id"), ""), 200)
	// Through a proxy, a local address says nothing of the client.
	r = e.do("GET", "/api/operations", "", "X-Forwarded-For", "203.0.113.9")
	wantError(t, r, 403, "Forbidden", "")
	if !strings.Contains(r.message(), AdminKeySetting) {
		t.Errorf("403 message %q", r.message())
	}

	h, err := New(Options{Operations: newFake("resize")})
	if err != nil {
		t.Fatal(err)
	}
	for addr, status := range map[string]int{
		"192.0.2.1:4000": 403, "[2001:db8::1]:4000": 403, "[::1]:4000": 200, "127.0.0.9:1": 200,
		"[::ffff:127.0.0.1]:1": 200, "garbage": 403, "": 403,
	} {
		req := httptest.NewRequest("GET", "/api/operations", nil)
		req.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != status || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("from %q: %d %s", addr, w.Code, w.Body)
		}
	}
}

func TestKeysEmpty(t *testing.T) {
	for _, c := range []struct {
		k     Keys
		empty bool
	}{
		{Keys{}, true},
		{Keys{Admin: []string{"", " "}, Callers: map[string]string{}}, true},
		{Keys{Admin: []string{"x"}}, false},
		{Keys{Callers: map[string]string{"x": "a"}}, false},
	} {
		if c.k.Empty() != c.empty {
			t.Errorf("%+v: Empty() = %v", c.k, !c.empty)
		}
	}
}

func TestKeysFromSettings(t *testing.T) {
	settings := map[string]string{
		"JOBHOST_ADMIN_KEY":       " k1 , k2,, ",
		"JOBHOST_KEY_ORDERS":      "o1,o2",
		"jobhost_key_Billing_App": "b1",
		"JOBHOST_KEY_":            "nameless",
		"JOBHOST_KEY_EMPTY":       " ",
		"OTHER":                   "x",
	}
	var names []string
	for n := range settings {
		names = append(names, n)
	}
	names = append(names, "JOBHOST_ADMIN_KEY") // listed twice
	k := KeysFromSettings(names, func(n string) (string, bool) { v, ok := settings[n]; return v, ok })
	if !slices.Equal(k.Admin, []string{"k1", "k2"}) {
		t.Errorf("admin %q", k.Admin)
	}
	want := map[string]string{"o1": "orders", "o2": "orders", "b1": "billing_app"}
	if len(k.Callers) != len(want) {
		t.Errorf("callers %v", k.Callers)
	}
	for key, caller := range want {
		if k.Callers[key] != caller {
			t.Errorf("callers %v", k.Callers)
		}
	}
	if _, err := New(Options{Operations: newFake(), Keys: k}); err != nil {
		t.Error(err)
	}
	// The admin key is read even when the names leave it out.
	k = KeysFromSettings(nil, func(n string) (string, bool) { return "only", n == AdminKeySetting })
	if !slices.Equal(k.Admin, []string{"only"}) || k.Empty() {
		t.Errorf("%+v", k)
	}
	if !KeysFromSettings(nil, func(string) (string, bool) { return "", false }).Empty() {
		t.Error("keys from nothing")
	}
}

func TestKeyLookupNoPrefixMatch(t *testing.T) {
	kr, err := newKeyring(Keys{Admin: []string{"abcdef"}, Callers: map[string]string{"xyz": "c"}})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]principal{"abcdef": {admin: true}, "xyz": {caller: "c"}} {
		if p, ok := kr.lookup(key); !ok || p != want {
			t.Errorf("%q: %+v %v", key, p, ok)
		}
	}
	for _, key := range []string{"abc", "abcdefg", "", "XYZ"} {
		if _, ok := kr.lookup(key); ok {
			t.Errorf("%q matched", key)
		}
	}
}
