package dashboard_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/dashboard"
	"github.com/jobhost/jobhost/operations/httpapi"
)

const adminKey = "admin-key-0123456789"

// serve runs one request through a handler with a given remote address
// and Host, as a server would see it.
func serve(t *testing.T, h http.Handler, remote, host string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr, req.Host = remote, host
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestOpenDashboardServesLoopbackOnly(t *testing.T) {
	h, err := dashboard.New(dashboard.Options{Source: newSource(orders)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, remote, host string
		header             []string
		want               int
		says               string
	}{
		{"loopback client, 127.0.0.1", "127.0.0.1:5000", "127.0.0.1:7071", nil, 200, ""},
		{"loopback client, localhost", "127.0.0.1:5000", "localhost:7071", nil, 200, ""},
		{"IPv6 loopback", "[::1]:5000", "[::1]:7071", nil, 200, ""},
		{"remote client", "203.0.113.7:5000", "127.0.0.1:7071", nil, 403, "loopback clients only"},
		{"rebinding Host", "127.0.0.1:5000", "attacker.example:7071", nil, 403, "DNS rebinding"},
		{"through a proxy", "127.0.0.1:5000", "localhost:7071", []string{"X-Forwarded-For", "198.51.100.1"}, 403, "proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(t, h, tc.remote, tc.host, tc.header...)
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.says) {
				t.Errorf("status %d, want %d saying %q; body:\n%s", rec.Code, tc.want, tc.says, rec.Body)
			}
		})
	}
	// The script asks for JSON: it gets the operations API's error shape.
	rec := serve(t, h, "203.0.113.7:5000", "host.example", "Accept", "application/json")
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), `"code":"Forbidden"`) || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("JSON refusal: %d %s %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
}

func TestAllowRemoteNeedsAuthentication(t *testing.T) {
	if _, err := dashboard.New(dashboard.Options{Source: newSource(), AllowRemote: true}); err == nil || !strings.Contains(err.Error(), "AllowRemote") {
		t.Errorf("New(AllowRemote without auth) = %v, want an error naming AllowRemote", err)
	}
	h, err := dashboard.New(dashboard.Options{Source: newSource(orders), AllowRemote: true, Keys: httpapi.Keys{Admin: []string{adminKey}}})
	if err != nil {
		t.Fatal(err)
	}
	if rec := serve(t, h, "203.0.113.7:5000", "jobs.example.com", httpapi.KeyHeader, adminKey); rec.Code != 200 {
		t.Errorf("remote client with the key: %d, want 200", rec.Code)
	}
	if rec := serve(t, h, "203.0.113.7:5000", "jobs.example.com"); rec.Code != 401 {
		t.Errorf("remote client without the key: %d, want 401", rec.Code)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]dashboard.Options{
		"no source":        {},
		"blank admin key":  {Source: newSource(), Keys: httpapi.Keys{Admin: []string{" "}}},
		"half basic auth":  {Source: newSource(), BasicAuth: &dashboard.BasicAuth{User: "ops"}},
		"relative prefix":  {Source: newSource(), Prefix: "dash"},
		"negative refresh": {Source: newSource(), RefreshInterval: -time.Second},
	} {
		if _, err := dashboard.New(o); err == nil {
			t.Errorf("%s: New succeeded, want an error", name)
		}
	}
}

func TestKeyRefusalsAndAccess(t *testing.T) {
	e := newEnv(t, func(o *dashboard.Options) {
		o.Keys = httpapi.Keys{Admin: []string{adminKey}, Callers: map[string]string{"caller-key-xyz": "orders"}}
	})
	b := e.browser

	resp, body := b.get("/")
	wantStatus(t, resp, body, 401)
	if !strings.Contains(body, `name="key"`) || strings.Contains(body, "ProcessOrder") {
		t.Errorf("a page without a key should show the login form and nothing of the host:\n%s", body)
	}
	resp, body = b.get("/operations", "Accept", "application/json")
	wantError(t, resp, body, 401, httpapi.KeyHeader)

	resp, body = b.get("/", httpapi.KeyHeader, "wrong")
	wantError(t, resp, body, 401, httpapi.KeyHeader)
	resp, body = b.get("/", httpapi.KeyHeader, "caller-key-xyz")
	wantError(t, resp, body, 403, httpapi.KeyHeader)
	resp, body = b.get("/?code=wrong")
	wantError(t, resp, body, 401, httpapi.KeyParam)

	resp, body = b.get("/", httpapi.KeyHeader, adminKey)
	wantStatus(t, resp, body, 200)
	if !strings.Contains(body, "ProcessOrder") || strings.Contains(body, adminKey) {
		t.Errorf("with the key the overview shows, without the key in it:\n%s", body)
	}

	// The code parameter is traded for a session, and leaves the address.
	resp, body = b.get("/invocations?function=ProcessOrder&code=" + adminKey)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/invocations?function=ProcessOrder" {
		t.Errorf("Location %q, want the page without code", loc)
	}
	cookie := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("session cookie %q lacks %s", cookie, attr)
		}
	}
	if strings.Contains(cookie, adminKey) {
		t.Error("the session cookie holds the key")
	}
	resp, body = b.get("/invocations?function=ProcessOrder")
	wantStatus(t, resp, body, 200)

	// The session ends after its time to live.
	e.clock.Advance(dashboard.DefaultSessionTTL + time.Second)
	resp, body = b.get("/")
	wantStatus(t, resp, body, 401)
}

func TestLoginForm(t *testing.T) {
	e := newEnv(t, func(o *dashboard.Options) { o.Keys = httpapi.Keys{Admin: []string{adminKey}} })
	b := e.browser
	resp, body := b.post("/login", url.Values{"key": {"nope"}, "next": {"/operations"}})
	wantStatus(t, resp, body, 401)
	if !strings.Contains(body, "not valid") {
		t.Errorf("a wrong key should say so:\n%s", body)
	}
	resp, body = b.post("/login", url.Values{"key": {adminKey}, "next": {"/operations?status=Failed"}})
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/operations?status=Failed" {
		t.Errorf("after login, Location %q", loc)
	}
	resp, body = b.get("/operations")
	wantStatus(t, resp, body, 200)

	// Logging out ends the session.
	resp, body = b.post("/logout", url.Values{"csrf": {token(t, body)}})
	wantStatus(t, resp, body, http.StatusSeeOther)
	resp, body = b.get("/operations")
	wantStatus(t, resp, body, 401)

	// next never leads away from the dashboard.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		resp, body = b.post("/login", url.Values{"key": {adminKey}, "next": {next}})
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("next=%q: Location %q, want /", next, loc)
		}
	}
	// A forged cookie is refused.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: "jobhost_dashboard", Value: "AAAA.AAAAAAAAAAA.1.AAAA"})
	resp, body = newBrowser(t, e.srv.URL).do(req)
	wantStatus(t, resp, body, 401)
}

func TestBasicAuth(t *testing.T) {
	e := newEnv(t, func(o *dashboard.Options) { o.BasicAuth = &dashboard.BasicAuth{User: "ops", Password: "s3cret"} })
	resp, body := e.browser.get("/")
	wantStatus(t, resp, body, 401)
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("WWW-Authenticate = %q, want a Basic challenge", resp.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
	req.SetBasicAuth("ops", "wrong")
	resp, body = e.browser.do(req)
	wantStatus(t, resp, body, 401)
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
	req.SetBasicAuth("ops", "s3cret")
	resp, body = e.browser.do(req)
	wantStatus(t, resp, body, 200)
	if strings.Contains(body, "s3cret") {
		t.Error("the page shows the password")
	}
}

func TestStateChangesNeedTheSessionsToken(t *testing.T) {
	e := newEnv(t, nil)
	id := e.src.poison("orders", `{"n":1}`, "boom")
	b := e.browser
	resp, page := b.get("/poison/ProcessOrder/confirm?action=requeue&id=" + id)
	wantStatus(t, resp, page, 200)
	tok := token(t, page)

	// No token, another session's token, a cross-site post: all refused,
	// and the message stays.
	resp, body := b.post("/poison/ProcessOrder/requeue", url.Values{"id": {id}})
	wantError(t, resp, body, 403, "csrf")
	other := newBrowser(t, e.srv.URL)
	_, otherPage := other.get("/poison/ProcessOrder/confirm?action=requeue&id=" + id)
	resp, body = b.post("/poison/ProcessOrder/requeue", url.Values{"id": {id}, "csrf": {token(t, otherPage)}})
	wantError(t, resp, body, 403, "csrf")
	resp, body = b.post("/poison/ProcessOrder/requeue", url.Values{"id": {id}, "csrf": {tok}}, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	wantStatus(t, resp, body, 403)
	if !strings.Contains(body, "cross-origin") {
		t.Errorf("the refusal should say cross-origin:\n%s", body)
	}
	if n := e.src.broker.Queue("orders-poison").Len(); n != 1 {
		t.Fatalf("after refused posts the poison queue holds %d, want 1", n)
	}
	// A GET cannot change anything.
	resp, body = b.get("/poison/ProcessOrder/requeue?id=" + id + "&csrf=" + url.QueryEscape(tok))
	wantStatus(t, resp, body, 405)

	resp, body = b.post("/poison/ProcessOrder/requeue", url.Values{"id": {id}, "csrf": {tok}})
	wantStatus(t, resp, body, http.StatusSeeOther)
	if n := e.src.broker.Queue("orders").Len(); n != 1 {
		t.Errorf("the source queue holds %d after the requeue, want 1", n)
	}
}

func TestReadOnlyHidesAndRefusesActions(t *testing.T) {
	e := newEnv(t, func(o *dashboard.Options) { o.ReadOnly = true })
	id := e.src.poison("orders", `{"n":1}`, "boom")
	rec, _, err := e.ops.Submit(t.Context(), clientSubmission("Provision"))
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser
	resp, page := b.get("/poison/ProcessOrder")
	wantStatus(t, resp, page, 200)
	for _, action := range []string{"Requeue", "Purge"} {
		if strings.Contains(page, action+"…") {
			t.Errorf("read-only poison page offers %s", action)
		}
	}
	if !strings.Contains(page, "read-only") {
		t.Error("the page does not say it is read-only")
	}
	resp, opPage := b.get("/operations/" + rec.ID)
	wantStatus(t, resp, opPage, 200)
	if strings.Contains(opPage, "Cancel…") {
		t.Error("read-only operation page offers Cancel")
	}
	tok := "any" // read-only refuses before it looks at the token
	for _, p := range []struct {
		path string
		form url.Values
	}{
		{"/poison/ProcessOrder/requeue", url.Values{"id": {id}}},
		{"/poison/ProcessOrder/purge", url.Values{}},
		{"/operations/" + rec.ID + "/cancel", url.Values{}},
	} {
		p.form.Set("csrf", tok)
		resp, body := b.post(p.path, p.form, "Accept", "application/json")
		wantStatus(t, resp, body, 403)
		if !strings.Contains(body, "read-only") {
			t.Errorf("POST %s: %s, want a read-only refusal", p.path, body)
		}
	}
	resp, body := b.get("/poison/ProcessOrder/confirm?action=purge")
	wantStatus(t, resp, body, 403)
	if e.src.broker.Queue("orders-poison").Len() != 1 {
		t.Error("read-only mode changed the poison queue")
	}
}
