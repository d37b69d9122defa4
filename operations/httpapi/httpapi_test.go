package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/operations"
)

func TestSubmitAccepted(t *testing.T) {
	e := newEnv(t, nil)
	r := e.admin("POST", "/api/operations/resize", `{"width": 100}`)
	wantStatus(t, r, http.StatusAccepted)
	id := r.str("id")
	want := e.srv.URL + "/api/operations/" + id
	if loc := r.header.Get("Location"); loc != want {
		t.Errorf("Location %q, want %q", loc, want)
	}
	if u, err := url.Parse(r.header.Get("Location")); err != nil || !u.IsAbs() {
		t.Errorf("Location %q is not absolute", r.header.Get("Location"))
	}
	if ra := r.header.Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After %q", ra)
	}
	for name, v := range map[string]any{
		"backgroundOperationId": id, "name": "resize", "state": 0.0, "stateName": "Ready",
		"status": 0.0, "statusName": "WaitingForResources",
		"location": want, "statusQueryGetUri": want, "cancelUri": want,
	} {
		if r.obj[name] != v {
			t.Errorf("%s = %v, want %v", name, r.obj[name], v)
		}
	}
	for _, name := range []string{"createdOn", "lastUpdated"} {
		if ts, err := time.Parse(time.RFC3339, r.str(name)); err != nil || ts.Location() != time.UTC {
			t.Errorf("%s = %q: not RFC 3339 UTC", name, r.str(name))
		}
	}
	if _, ok := r.obj["input"]; ok {
		t.Error("the 202 answer carries the input")
	}
	if r.header.Get("Preference-Applied") != "" || r.header.Get(ReplayedHeader) != "" {
		t.Errorf("headers %v", r.header)
	}
	s := e.fake.lastSubmission()
	if s.Function != "resize" || string(s.Input) != `{"width": 100}` || s.RunAs != "" || s.CallbackURL != "" || s.IdempotencyKey != "" {
		t.Errorf("submission %+v", s)
	}
}

func TestSubmitContentTypes(t *testing.T) {
	e := newEnv(t, nil)
	for ct, status := range map[string]int{
		"application/json":                  202,
		"application/json; charset=utf-8":   202,
		"Application/JSON; Charset=UTF-8":   202,
		"application/vnd.orders.v1+json":    202,
		"application/problem+json":          202,
		"text/plain":                        415,
		"application/json; charset=latin1":  415,
		"application/x-www-form-urlencoded": 415,
		"application/+json":                 415,
		"json":                              415,
		"":                                  415,
	} {
		r := e.admin("POST", "/api/operations/resize", `{}`, "Content-Type", ct)
		if status == 415 {
			wantError(t, r, 415, "UnsupportedMediaType", "Content-Type")
		} else {
			wantStatus(t, r, status)
		}
	}
}

func TestSubmitBody(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBody = 64 })
	big := `{"s":"` + strings.Repeat("x", 100) + `"}`
	wantError(t, e.admin("POST", "/api/operations/resize", big), 413, "PayloadTooLarge", "")

	// Without a Content-Length (chunked), the limit holds as it is read.
	pr, pw := io.Pipe()
	go func() { _, _ = io.WriteString(pw, big); pw.Close() }()
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/operations/resize", pr)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(KeyHeader, adminKey)
	wantError(t, e.send(req), 413, "PayloadTooLarge", "")

	exact := `{"s":"` + strings.Repeat("x", 64-8) + `"}`
	wantStatus(t, e.admin("POST", "/api/operations/resize", exact), 202)
	wantError(t, e.admin("POST", "/api/operations/resize", `{"a":`), 400, "BadRequest", "")
	wantError(t, e.admin("POST", "/api/operations/resize", `{} {}`), 400, "BadRequest", "")
	wantError(t, e.admin("POST", "/api/operations/resize", `   `), 400, "BadRequest", "")
	wantError(t, e.admin("POST", "/api/operations/resize", "", "Content-Type", "application/json"), 400, "BadRequest", "")
	wantStatus(t, e.admin("POST", "/api/operations/resize", `null`), 202)
}

func TestSubmitErrors(t *testing.T) {
	e := newEnv(t, nil)
	wantError(t, e.admin("POST", "/api/operations/nosuch", `{}`), 404, "NotFound", "function")
	wantError(t, e.admin("POST", "/api/operations/resize", `{"bad":1}`), 400, "BadRequest", "bad")

	r := e.admin("POST", "/api/operations/resize", `{"s":"`+strings.Repeat("x", 2000)+`"}`)
	wantError(t, r, 413, "PayloadTooLarge", "")
	if strings.Contains(r.message(), "secret-queue") {
		t.Errorf("the 413 names the queue: %s", r.message())
	}

	e.fake.submitErr = errors.New("dial tcp 10.0.0.7:5432: connection refused; password=hunter2")
	r = e.admin("POST", "/api/operations/resize", `{}`)
	wantError(t, r, 503, "ServiceUnavailable", "")
	if strings.Contains(string(r.body), "10.0.0.7") || r.header.Get("Retry-After") == "" {
		t.Errorf("503 %s %v", r.body, r.header)
	}
	logged := e.logs.FilterMessageSnippet("submitting failed").All()
	if len(logged) != 1 || strings.Contains(logged[0].ContextMap()["error"].(string), "hunter2") ||
		!strings.Contains(logged[0].ContextMap()["error"].(string), "connection refused") {
		t.Errorf("logged %v", logged)
	}

	e.fake.submitErr = fmt.Errorf("submit: %w", client.ErrNoStore)
	r = e.admin("POST", "/api/operations/resize", `{}`)
	wantError(t, r, 503, "ServiceUnavailable", "")
	if !strings.Contains(r.message(), "no operations store") || r.header.Get("Retry-After") != "" {
		t.Errorf("no store: %v %s", r.header, r.body)
	}

	e.fake.submitErr = nil
	id := e.submit("resize", `{}`)
	e.fake.getErr = errors.New("table storage: 500 https://acct.table.core.windows.net/ops?sig=abc")
	for _, method := range []string{"GET", "DELETE"} {
		r = e.admin(method, "/api/operations/"+id, "")
		wantError(t, r, 503, "ServiceUnavailable", "")
		if strings.Contains(string(r.body), "acct") {
			t.Errorf("the 503 shows the detail: %s", r.body)
		}
	}
	for _, entry := range e.logs.FilterMessageSnippet("reading operations failed").All() {
		if strings.Contains(entry.ContextMap()["error"].(string), "sig=abc") {
			t.Errorf("logged a SAS: %v", entry.ContextMap())
		}
	}
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, nil)
	r1 := e.admin("POST", "/api/operations/resize", `{"w":1}`, IdempotencyKeyHeader, "order-42")
	wantStatus(t, r1, 202)
	if r1.header.Get(ReplayedHeader) != "" {
		t.Error("the first answer says replayed")
	}
	r2 := e.admin("POST", "/api/operations/resize", `{"w":1}`, IdempotencyKeyHeader, "order-42")
	wantStatus(t, r2, 202)
	if r2.str("id") != r1.str("id") || r2.header.Get(ReplayedHeader) != "true" || r2.header.Get("Location") != r1.header.Get("Location") {
		t.Errorf("replay %s %v, first %s", r2.body, r2.header, r1.body)
	}
	if k := e.fake.lastSubmission().IdempotencyKey; k != "order-42" {
		t.Errorf("key %q", k)
	}
	// The draft standard's quoted form is the same key.
	r3 := e.admin("POST", "/api/operations/resize", `{"w":1}`, IdempotencyKeyHeader, `"order-42"`)
	if r3.str("id") != r1.str("id") {
		t.Error("the quoted key is another key")
	}
	wantError(t, e.admin("POST", "/api/operations/resize", `{"w":2}`, IdempotencyKeyHeader, "order-42"), 409, "Conflict", IdempotencyKeyHeader)
	// Another caller's key is its own.
	r4 := e.do("POST", "/api/operations/resize", `{"w":1}`, KeyHeader, keyA, IdempotencyKeyHeader, "order-42")
	wantStatus(t, r4, 202)
	if r4.str("id") == r1.str("id") {
		t.Error("caller a replayed the admin's operation")
	}
	// A replay of a completed operation asked to wait answers 200 at once.
	e.fake.succeed(r1.str("id"), `"done"`)
	r5 := e.admin("POST", "/api/operations/resize", `{"w":1}`, IdempotencyKeyHeader, "order-42", "Prefer", "wait=30")
	wantStatus(t, r5, 200)
	if r5.obj["output"] != "done" || r5.header.Get(ReplayedHeader) != "true" {
		t.Errorf("replay of a completed operation: %s", r5.body)
	}

	for _, bad := range []string{strings.Repeat("k", 256), "has space", "ключ", `""`} {
		wantError(t, e.admin("POST", "/api/operations/resize", `{}`, IdempotencyKeyHeader, bad), 400, "BadRequest", IdempotencyKeyHeader)
	}
	wantStatus(t, e.admin("POST", "/api/operations/resize", `{}`, IdempotencyKeyHeader, strings.Repeat("k", 255)), 202)
	wantError(t, e.admin("POST", "/api/operations/resize", `{}`, IdempotencyKeyHeader, "a", IdempotencyKeyHeader, "b"), 400, "BadRequest", IdempotencyKeyHeader)
}

func TestPreferWaitCompletes(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.waiting = make(chan string)
	got := make(chan *resp, 1)
	go func() {
		got <- e.admin("POST", "/api/operations/resize", `{"w":1}`, "Prefer", "respond-async, wait=10")
	}()
	id := <-e.fake.waiting // the handler is waiting
	e.fake.start(id)
	<-e.fake.waiting // woken by the start, waiting again
	e.fake.succeed(id, `{"url":"https://x/y.png"}`)
	r := <-got
	wantStatus(t, r, 200)
	if r.str("id") != id || r.str("statusName") != "Succeeded" || r.obj["output"].(map[string]any)["url"] != "https://x/y.png" {
		t.Errorf("200 body %s", r.body)
	}
	if pa := r.header.Get("Preference-Applied"); pa != "wait=10" {
		t.Errorf("Preference-Applied %q", pa)
	}
	if r.header.Get("Content-Location") != e.srv.URL+"/api/operations/"+id || r.header.Get("Retry-After") != "" {
		t.Errorf("headers %v", r.header)
	}
}

func TestPreferWaitTimesOut(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxWait = 50 * time.Millisecond })
	start := time.Now()
	r := e.admin("POST", "/api/operations/resize", `{}`, "Prefer", "wait=30", "Prefer", "respond-async")
	wantStatus(t, r, 202)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v: MaxWait did not cap the wait", took)
	}
	if pa := r.header.Get("Preference-Applied"); pa != "wait=1, respond-async" {
		t.Errorf("Preference-Applied %q", pa)
	}
	if r.header.Get("Location") == "" {
		t.Error("no Location")
	}
	// wait=0 does not wait and does not answer 200.
	r = e.admin("POST", "/api/operations/resize", `{}`, "Prefer", "wait=0")
	wantStatus(t, r, 202)
}

func TestCallback(t *testing.T) {
	var checked []string
	e := newEnv(t, func(o *Options) {
		o.CheckCallback = func(u string) error {
			checked = append(checked, u)
			if strings.Contains(u, "evil") {
				return errors.New("host evil.example is not in the allowlist")
			}
			return nil
		}
	})
	cb := "https://hooks.example/done?sig=c2VjcmV0&se=2030"
	r := e.admin("POST", "/api/operations/resize", `{}`, "Prefer", `respond-async, callback; url="`+cb+`"`)
	wantStatus(t, r, 202)
	if pa := r.header.Get("Preference-Applied"); pa != "callback, respond-async" {
		t.Errorf("Preference-Applied %q", pa)
	}
	if s := e.fake.lastSubmission(); s.CallbackURL != cb {
		t.Errorf("callback %q", s.CallbackURL)
	}
	g := e.admin("GET", "/api/operations/"+r.str("id"), "")
	if got := g.str("callbackUrl"); got != "https://hooks.example/done?REDACTED" {
		t.Errorf("callbackUrl shown as %q", got)
	}

	wantStatus(t, e.admin("POST", "/api/operations/resize?callbackUrl="+url.QueryEscape(cb), `{}`), 202)
	if s := e.fake.lastSubmission(); s.CallbackURL != cb {
		t.Errorf("callback from the parameter %q", s.CallbackURL)
	}
	wantStatus(t, e.admin("POST", "/api/operations/resize?callbackUrl="+url.QueryEscape(cb), `{}`, "Prefer", `callback; url="`+cb+`"`), 202)
	for _, c := range []struct{ query, prefer string }{
		{"?callbackUrl=" + url.QueryEscape("https://evil.example/x"), ""},
		{"?callbackUrl=/relative", ""},
		{"?callbackUrl=" + url.QueryEscape("ftp://files.example/x"), ""},
		{"", `callback; url="mailto:a@b"`},
		{"?callbackUrl=" + url.QueryEscape(cb), `callback; url="https://other.example/"`},
		{"?callbackUrl=a&callbackUrl=b", ""},
	} {
		r := e.admin("POST", "/api/operations/resize"+c.query, `{}`, "Prefer", c.prefer)
		wantError(t, r, 400, "BadRequest", CallbackParam)
	}
	if len(checked) != 4 {
		t.Errorf("CheckCallback saw %q", checked)
	}
}

func TestGet(t *testing.T) {
	e := newEnv(t, nil)
	id := e.submit("resize", `{"w": 7}`)
	r := e.admin("GET", "/api/operations/"+id, "")
	wantStatus(t, r, 200)
	if r.header.Get("Retry-After") != "5" || r.str("statusName") != "WaitingForResources" {
		t.Errorf("while waiting: %v %s", r.header, r.body)
	}
	if in := r.obj["input"].(map[string]any); in["w"] != 7.0 {
		t.Errorf("input %v", r.obj["input"])
	}
	if _, ok := r.obj["output"]; ok {
		t.Error("output before it succeeded")
	}
	e.fake.start(id)
	r = e.admin("GET", "/api/operations/"+id, "")
	wantStatus(t, r, 200) // not 202, as Durable Functions would
	if r.str("statusName") != "InProgress" || r.obj["state"] != 2.0 || r.obj["attempt"] != 1.0 || r.str("startTime") == "" {
		t.Errorf("running: %s", r.body)
	}
	e.fake.succeed(id, `[1,2]`)
	r = e.admin("GET", "/api/operations/"+id, "")
	wantStatus(t, r, 200)
	if r.header.Get("Retry-After") != "" || r.str("statusName") != "Succeeded" || r.obj["stateName"] != "Completed" {
		t.Errorf("succeeded: %v %s", r.header, r.body)
	}
	if out, _ := r.obj["output"].([]any); len(out) != 2 || r.obj["retryCount"] != 0.0 {
		t.Errorf("output %s", r.body)
	}
	for _, name := range []string{"createdOn", "lastUpdated", "startTime", "endTime", "expiresOn"} {
		if ts, err := time.Parse(time.RFC3339, r.str(name)); err != nil || ts.Location() != time.UTC || !strings.HasSuffix(r.str(name), "Z") {
			t.Errorf("%s = %q", name, r.str(name))
		}
	}

	id2 := e.submit("report", `{}`)
	e.fake.start(id2)
	e.fake.fail(id2)
	r = e.admin("GET", "/api/operations/"+id2, "")
	if r.str("errorCode") != "Boom" || r.str("errorMessage") != "it broke" || r.str("statusName") != "Failed" {
		t.Errorf("failed: %s", r.body)
	}

	wantError(t, e.admin("GET", "/api/operations/"+operations.NewID(), ""), 404, "NotFound", "id")
	wantError(t, e.admin("GET", "/api/operations/"+strings.Repeat("x", 300), ""), 404, "NotFound", "id")
	if h := e.admin("HEAD", "/api/operations/"+id, ""); h.status != 200 {
		t.Errorf("HEAD %d", h.status)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, nil)
	waiting := e.submit("resize", `{}`)
	r := e.admin("DELETE", "/api/operations/"+waiting, "")
	wantStatus(t, r, 200)
	if r.str("statusName") != "Canceled" {
		t.Errorf("cancel of a waiting one: %s", r.body)
	}
	wantStatus(t, e.admin("DELETE", "/api/operations/"+waiting, ""), 200) // again: nothing changes

	running := e.submit("resize", `{}`)
	e.fake.start(running)
	r = e.admin("DELETE", "/api/operations/"+running, "")
	wantStatus(t, r, 202)
	if r.str("statusName") != "Canceling" || r.header.Get("Location") == "" || r.header.Get("Retry-After") == "" {
		t.Errorf("cancel of a running one: %v %s", r.header, r.body)
	}

	done := e.submit("resize", `{}`)
	e.fake.succeed(done, `1`)
	r = e.admin("DELETE", "/api/operations/"+done, "")
	wantError(t, r, 409, "Conflict", "")
	if !strings.Contains(r.message(), "Succeeded") {
		t.Errorf("409 message %q", r.message())
	}
	wantError(t, e.admin("DELETE", "/api/operations/"+operations.NewID(), ""), 404, "NotFound", "id")
}

func TestMethodsAndPaths(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/api/operations/x", "GET, HEAD, POST, DELETE"},
		{"PATCH", "/api/operations/x", "GET, HEAD, POST, DELETE"},
		{"POST", "/api/operations", "GET, HEAD"},
		{"DELETE", "/api/operations", "GET, HEAD"},
		{"OPTIONS", "/api/operations/", "GET, HEAD"},
	} {
		r := e.admin(c.method, c.path, "")
		wantError(t, r, 405, "MethodNotAllowed", "")
		if r.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q", c.method, c.path, r.header.Get("Allow"))
		}
	}
	for _, p := range []string{"/api/operations/a/b", "/elsewhere", "/api/operationsx"} {
		wantError(t, e.admin("GET", p, ""), 404, "NotFound", "")
	}
	wantStatus(t, e.admin("GET", "/api/operations/", ""), 200) // the listing
}

func TestPanicRecovered(t *testing.T) {
	e := newEnv(t, nil)
	wantError(t, e.admin("GET", "/api/operations/boom", ""), 500, "InternalServerError", "")
	if n := e.logs.FilterMessageSnippet("panicked").Len(); n != 1 {
		t.Errorf("%d panics logged", n)
	}
	wantStatus(t, e.admin("POST", "/api/operations/resize", `{}`), 202) // still serving
}

func TestForwardedHeaders(t *testing.T) {
	for _, trust := range []bool{false, true} {
		e := newEnv(t, func(o *Options) { o.TrustForwarded = trust; o.Prefix = "/jobs/ops/" })
		r := e.admin("POST", "/jobs/ops/resize", `{}`,
			"X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com, proxy.internal")
		wantStatus(t, r, 202)
		want := e.srv.URL + "/jobs/ops/" + r.str("id")
		if trust {
			want = "https://api.example.com/jobs/ops/" + r.str("id")
		}
		if r.header.Get("Location") != want || r.str("location") != want {
			t.Errorf("trust %v: Location %q, want %q", trust, r.header.Get("Location"), want)
		}
		bad := e.admin("POST", "/jobs/ops/resize", `{}`, "X-Forwarded-Host", "evil.example/path?x")
		if loc := bad.header.Get("Location"); !strings.HasPrefix(loc, e.srv.URL+"/") {
			t.Errorf("a bad forwarded host made %q", loc)
		}
	}
}

func TestNewRejects(t *testing.T) {
	ops := newFake()
	for name, o := range map[string]Options{
		"no operations":     {},
		"relative prefix":   {Operations: ops, Prefix: "api"},
		"root prefix":       {Operations: ops, Prefix: "/"},
		"wildcard prefix":   {Operations: ops, Prefix: "/api/{x}"},
		"unclean prefix":    {Operations: ops, Prefix: "/api//ops"},
		"negative wait":     {Operations: ops, MaxWait: -time.Second},
		"blank admin key":   {Operations: ops, Keys: Keys{Admin: []string{" "}}},
		"blank caller key":  {Operations: ops, Keys: Keys{Callers: map[string]string{"": "a"}}},
		"nameless caller":   {Operations: ops, Keys: Keys{Callers: map[string]string{"k": ""}}},
		"shared key":        {Operations: ops, Keys: Keys{Admin: []string{"k"}, Callers: map[string]string{"k": "a"}}},
		"negative max body": {Operations: ops, MaxBody: -1},
	} {
		h, err := New(o)
		if err == nil || h != nil {
			t.Errorf("%s: New took it", name)
		} else if strings.Contains(err.Error(), `"k"`) {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
}

func TestRequestCanceledWhileWaiting(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.waiting = make(chan string)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/api/operations/resize", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(KeyHeader, adminKey)
	req.Header.Set("Prefer", "wait=60")
	done := make(chan error, 1)
	go func() {
		res, err := e.srv.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	<-e.fake.waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}
