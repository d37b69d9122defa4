package dashboard_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/dashboard"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/status"
)

// row returns the overview's table row of a function.
func row(t *testing.T, page, function string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<tr data-function="` + function + `">.*?</tr>`).FindString(page)
	if m == "" {
		t.Fatalf("no row for %s in:\n%s", function, page)
	}
	return m
}

func TestOverviewShowsEachFunctionAndItsRate(t *testing.T) {
	e := newEnv(t, nil)
	e.src.poison("orders", "a", "x")
	e.src.poison("orders", "b", "x")
	resp, page := e.browser.get("/")
	wantStatus(t, resp, page, 200)
	r := row(t, page, "ProcessOrder")
	for _, want := range []string{"listening", "orders", "memqueue", "2 / 24", ">10<", ">7<", `href="/poison/ProcessOrder"`} {
		if !strings.Contains(r, want) {
			t.Errorf("the ProcessOrder row lacks %q:\n%s", want, r)
		}
	}
	if !strings.Contains(r, `title="orders-poison">2</a>`) {
		t.Errorf("the row should show the 2 poison messages:\n%s", r)
	}
	if !strings.Contains(row(t, page, "Provision"), "dial tcp: connection refused") {
		t.Error("Provision's last error is not shown")
	}
	if !strings.Contains(page, `data-live`) || !strings.Contains(page, `/static/dashboard.js`) {
		t.Error("the overview does not refresh live")
	}

	// 30 invocations finish in 10 s: 3 a second (the page refreshes
	// several times a second meanwhile).
	for range 4 {
		e.clock.Advance(250 * time.Millisecond)
		e.src.update("ProcessOrder", func(f *status.Function) { f.Succeeded++ })
		e.browser.get("/")
	}
	e.clock.Advance(9 * time.Second)
	e.src.update("ProcessOrder", func(f *status.Function) { f.Succeeded += 21; f.Failed += 5 })
	_, page = e.browser.get("/")
	if r := row(t, page, "ProcessOrder"); !strings.Contains(r, "3.00/s") {
		t.Errorf("rate: want 3.00/s in\n%s", r)
	}
	if r := row(t, page, "Provision"); !strings.Contains(r, ">0/s<") {
		t.Errorf("an idle function's rate should be 0/s:\n%s", r)
	}
}

func TestOverviewWithoutOperations(t *testing.T) {
	e := newEnv(t, func(o *dashboard.Options) { o.Operations, o.Counter = nil, nil })
	_, page := e.browser.get("/")
	if strings.Contains(page, "/operations") {
		t.Error("without Operations the pages link to operations")
	}
	resp, body := e.browser.get("/operations")
	wantStatus(t, resp, body, 404)
}

func TestInvocationsFilterAndRefuseBadInput(t *testing.T) {
	e := newEnv(t, nil)
	start := e.clock.Now().Add(-time.Minute)
	for i, inv := range []status.Invocation{
		{ID: "inv-1", Function: "ProcessOrder", MessageID: "msg-1", Outcome: "succeeded", DequeueCount: 1, Duration: 12 * time.Millisecond, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{ID: "inv-2", Function: "ProcessOrder", MessageID: "msg-2", Outcome: "failed", Error: "bad <input>", DequeueCount: 3, Duration: 2 * time.Second},
		{ID: "inv-3", Function: "Provision", MessageID: "msg-3", Outcome: "poisoned", Error: "gave up"},
	} {
		inv.Start = start.Add(time.Duration(i) * time.Second)
		e.src.ring.Add(inv)
	}
	_, page := e.browser.get("/invocations")
	for _, want := range []string{"msg-1", "msg-2", "msg-3", "4bf92f3577b34da6a3ce929d0e0e4736", "12ms", "2.00s", "bad &lt;input&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("the invocations page lacks %q", want)
		}
	}
	if strings.Contains(page, "bad <input>") {
		t.Error("an error is not escaped")
	}
	_, page = e.browser.get("/invocations?function=processorder&outcome=failed")
	if !strings.Contains(page, "msg-2") || strings.Contains(page, "msg-1") || strings.Contains(page, "msg-3") {
		t.Errorf("function+outcome filter:\n%s", page)
	}
	_, page = e.browser.get("/invocations?message=msg-3")
	if !strings.Contains(page, "msg-3") || strings.Contains(page, "msg-1") {
		t.Error("message id search")
	}
	_, page = e.browser.get("/invocations?limit=1")
	if strings.Count(page, `<span class="badge`) != 1 || !strings.Contains(page, "show more") {
		t.Errorf("limit=1 should show one row and offer more:\n%s", page)
	}
	for _, tc := range []struct{ query, field string }{
		{"outcome=exploded", "outcome"},
		{"function=Nobody", "function"},
		{"limit=0", "limit"},
		{"limit=many", "limit"},
		{"limit=100000", "limit"},
		{"message=" + strings.Repeat("x", 2000), "message"},
	} {
		resp, body := e.browser.get("/invocations?"+tc.query, "Accept", "application/json")
		wantError(t, resp, body, 400, tc.field)
		resp, body = e.browser.get("/invocations?" + tc.query)
		wantError(t, resp, body, 400, tc.field) // the page names the field too
	}
}

func TestPoisonPageDecodesAndEscapes(t *testing.T) {
	e := newEnv(t, nil)
	e.src.poison("orders", `{"order":"<script>alert(1)</script>"}`, "validation: qty < 0")
	e.src.poison("orders", "\x00\x01binary", "")
	resp, page := e.browser.get("/poison/ProcessOrder")
	wantStatus(t, resp, page, 200)
	for _, want := range []string{
		"{\n  &#34;order&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;\n}", // indented JSON, escaped
		"validation: qty &lt; 0",
		"not text: shown escaped",
		"Requeue all…", "Purge…",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the poison page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("a message body reached the page unescaped")
	}
	resp, body := e.browser.get("/poison/Nobody")
	wantError(t, resp, body, 404, "function")
	resp, body = e.browser.get("/poison/ProcessOrder/confirm?action=explode")
	wantError(t, resp, body, 400, "action")
	resp, body = e.browser.get("/poison/ProcessOrder/confirm?action=requeue")
	wantError(t, resp, body, 400, "id")
}

func TestStorageQueueBodiesAreDecodedFromBase64(t *testing.T) {
	f := orders
	f.Broker = "azurequeue"
	e := newEnv(t, nil)
	e.src.mu.Lock()
	e.src.funcs[0] = f
	e.src.mu.Unlock()
	stored := base64.StdEncoding.EncodeToString([]byte(`{"site":"https://contoso.example/hr"}`))
	e.src.poison("orders", stored, "")
	e.src.poison("orders", "plain text, not base64", "")
	_, page := e.browser.get("/poison/ProcessOrder")
	if !strings.Contains(page, "https://contoso.example/hr") || !strings.Contains(page, "decoded from base64") {
		t.Errorf("a base64 body should be shown decoded:\n%s", page)
	}
	if !strings.Contains(page, stored) {
		t.Error("the stored text should be at hand too")
	}
	if !strings.Contains(page, "plain text, not base64") {
		t.Error("a body that is not base64 should be shown as stored")
	}
}

func TestOperationsListDetailAndBadInput(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		name := "Provision"
		if i%2 == 1 {
			name = "ProcessOrder"
		}
		rec, _, err := e.ops.Submit(ctx, clientSubmission(name))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	done, err := e.store.Update(ctx, ids[0], operations.Succeed(json.RawMessage(`{"url":"https://contoso.example/sites/hr"}`), e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	_, page := e.browser.get("/operations?function=provision")
	if strings.Count(page, `<tr data-id=`) != 3 || strings.Contains(page, ids[1]) {
		t.Errorf("function filter: want Provision's 3 operations:\n%s", page)
	}
	if !strings.Contains(page, "Succeeded <b>1</b>") || !strings.Contains(page, "WaitingForResources <b>2</b>") {
		t.Errorf("the counts of Provision's operations are missing:\n%s", page)
	}
	_, page = e.browser.get("/operations?status=Succeeded")
	if strings.Count(page, `<tr data-id=`) != 1 || !strings.Contains(page, done.ID) {
		t.Errorf("status filter:\n%s", page)
	}

	// Cursor paging: 2 a page, 3 pages, every operation once.
	seen := map[string]bool{}
	next := "/operations?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		_, page = e.browser.get(next)
		for _, m := range regexp.MustCompile(`<tr data-id="([^"]+)"`).FindAllStringSubmatch(page, -1) {
			if seen[m[1]] {
				t.Errorf("%s on two pages", m[1])
			}
			seen[m[1]] = true
		}
		next = ""
		if m := regexp.MustCompile(`<a class="next" href="([^"]+)"`).FindStringSubmatch(page); m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 5 {
		t.Errorf("paging showed %d operations, want 5", len(seen))
	}

	resp, page := e.browser.get("/operations/" + done.ID)
	wantStatus(t, resp, page, 200)
	for _, want := range []string{"Succeeded", "https://contoso.example/sites/hr", "&#34;site&#34;: &#34;hr&#34;"} {
		if !strings.Contains(page, want) {
			t.Errorf("the detail page lacks %q", want)
		}
	}
	if strings.Contains(page, "Cancel…") {
		t.Error("a completed operation offers Cancel")
	}

	for _, tc := range []struct {
		path   string
		status int
		field  string
	}{
		{"/operations?status=Exploded", 400, "status"},
		{"/operations?function=Nobody", 400, "function"},
		{"/operations?cursor=not-a-cursor", 400, "cursor"},
		{"/operations?limit=-1", 400, "limit"},
		{"/operations/" + operations.NewID(), 404, "id"},
		{"/operations/" + ids[1] + "/cancel", 405, ""},
	} {
		resp, body := e.browser.get(tc.path, "Accept", "application/json")
		wantError(t, resp, body, tc.status, tc.field)
	}
}

func TestNoPanicReachesTheUser(t *testing.T) {
	e := newEnv(t, nil)
	e.src.panicFunctions.Store(true)
	resp, body := e.browser.get("/")
	wantStatus(t, resp, body, http.StatusInternalServerError)
	if strings.Contains(body, "boom") || strings.Contains(body, "AccountKey") || strings.Contains(body, "goroutine") {
		t.Errorf("the panic's detail reached the user:\n%s", body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.browser.get("/")
	wantStatus(t, resp, body, 200)
	for k, want := range map[string]string{
		"Content-Security-Policy": "script-src 'self'",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
	} {
		if !strings.Contains(resp.Header.Get(k), want) {
			t.Errorf("%s = %q, want %q in it", k, resp.Header.Get(k), want)
		}
	}
	resp, body = e.browser.get("/static/style.css")
	wantStatus(t, resp, body, 200)
	if !strings.Contains(body, "prefers-color-scheme: dark") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %s, dark mode missing", resp.Header.Get("Content-Type"))
	}
	resp, body = e.browser.get("/static/../dashboard.go")
	if resp.StatusCode == 200 {
		t.Error("a file outside the static files is served")
	}
}

func TestBodiesFollowTheFunctionsMessageEncoding(t *testing.T) {
	e := newEnv(t, nil)
	e.src.update("ProcessOrder", func(f *status.Function) { f.MessageEncoding = "base64" })
	e.src.poison("orders", base64.StdEncoding.EncodeToString([]byte(`{"order":"SO-1"}`)), "")
	e.src.poison("orders", "not base64!", "")
	_, page := e.browser.get("/poison/ProcessOrder")
	if !strings.Contains(page, "&#34;order&#34;: &#34;SO-1&#34;") || !strings.Contains(page, "decoded from base64") {
		t.Errorf("messageEncoding base64 on a broker: the body should be decoded:\n%s", page)
	}
	if !strings.Contains(page, "not valid base64") {
		t.Error("a body that does not decode should say so")
	}
}

// unsupported is a counter that cannot count (a store without the
// capability behind the host's wrapper).
type unsupported struct{}

func (unsupported) CountByStatus(context.Context, string) (map[operations.Status]int, error) {
	return nil, errors.ErrUnsupported
}

func TestAStoreThatCannotCountShowsNoCounts(t *testing.T) {
	e := newEnv(t, func(o *dashboard.Options) { o.Counter = unsupported{} })
	_, page := e.browser.get("/operations")
	if strings.Contains(page, "Not counted") || strings.Contains(page, "counting failed") || strings.Contains(page, "in all") {
		t.Errorf("a store that cannot count should show no counts:\n%s", page)
	}
	_, page = e.browser.get("/")
	if strings.Contains(page, "<h2>Operations</h2>") {
		t.Error("the overview shows operation counts it does not have")
	}
}
