package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/examples/sitemodify"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/runtime"
)

// lockedBuffer collects the host's logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// webFixture is the web app in front of a worker host in this process, both
// on in-process queues (memqueue) and one memstore.
type webFixture struct {
	srv  *httptest.Server
	c    *client.Client // the web app's client
	logs *lockedBuffer
}

func startWeb(t *testing.T) *webFixture {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	settings := runtime.NewAppSettings(map[string]string{
		sitemodify.QueueSetting:   "memqueue://site-modify-web-" + suffix,
		sitemodify.ResultsSetting: "memqueue://site-modify-web-results-" + suffix,
	})
	reg := &functions.Registry{}
	sitemodify.Register(reg)
	cfg := runtime.DefaultConfig()
	cfg.PubSub.MaxPollingInterval = 100 * time.Millisecond
	cfg.PubSub.MaxDequeueCount = 1
	cfg.ShutdownTimeout = 5 * time.Second
	store := memstore.New(memstore.Options{})

	logs := &lockedBuffer{}
	l, err := runtime.NewLogs(runtime.LogOptions{Output: zapcore.AddSync(logs)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := runtime.New(runtime.Options{Registry: reg, Config: cfg, Settings: settings, Logs: l, Operations: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host: %v", err)
		}
	})

	// The web app's own client, as a separate process would have it: it
	// shares only the store and the queues with the host.
	c, err := runtime.NewClient(cfg, settings, reg, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv := httptest.NewServer(newHandler(c))
	t.Cleanup(srv.Close)
	return &webFixture{srv: srv, c: c, logs: logs}
}

// noRedirects is a client that shows the redirects instead of following
// them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout: 10 * time.Second}

func (f *webFixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := noRedirects.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (f *webFixture) post(t *testing.T, path string, form url.Values) (int, string, string) {
	t.Helper()
	resp, err := noRedirects.PostForm(f.srv.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// wait waits for the operation to complete.
func (f *webFixture) wait(t *testing.T, id string) *operations.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec, err := f.c.Wait(ctx, id)
	if err != nil {
		t.Fatalf("operation %s did not complete: %v (last seen %+v)\nhost logs:\n%s", id, err, rec, f.logs.String())
	}
	return rec
}

var keyField = regexp.MustCompile(`name="key" value="([0-9a-f]{32})"`)

// submit posts the form the home page serves and returns the new
// request's id.
func (f *webFixture) submit(t *testing.T, site, requestor, workMs string) (string, url.Values) {
	t.Helper()
	code, page := f.get(t, "/")
	m := keyField.FindStringSubmatch(page)
	if code != http.StatusOK || m == nil || !strings.Contains(page, `action="/requests"`) {
		t.Fatalf("GET /: %d, no form with a key:\n%s", code, page)
	}
	form := url.Values{"siteUrl": {site}, "requestor": {requestor}, "workMs": {workMs}, "key": {m[1]}}
	code, loc, body := f.post(t, "/requests", form)
	id, ok := strings.CutPrefix(loc, "/requests/")
	if code != http.StatusSeeOther || !ok || id == "" {
		t.Fatalf("POST /requests: %d, Location %q:\n%s", code, loc, body)
	}
	return id, form
}

// The form submits a background operation the worker runs; the status
// page shows it completed, with its output, escaped.
func TestSubmitShowsTheRecord(t *testing.T) {
	f := startWeb(t)
	id, form := f.submit(t, "https://contoso.sharepoint.com/sites/marketing", "<b>Megan</b>", "10")

	// The record is there at once, before the worker ran it.
	rec, err := f.c.Get(context.Background(), id)
	if err != nil || rec.Name != "ProcessSiteModifyRequest" {
		t.Fatalf("the record of %s: %+v %v", id, rec, err)
	}
	if string(rec.Input) != `{"siteUrl":"https://contoso.sharepoint.com/sites/marketing","requestorName":"\u003cb\u003eMegan\u003c/b\u003e","workMs":10}` {
		t.Errorf("input %s", rec.Input)
	}
	// The same form posted again (a double click) is the same operation.
	if code, loc, _ := f.post(t, "/requests", form); code != http.StatusSeeOther || loc != "/requests/"+id {
		t.Errorf("the same form again: %d %q, want 303 to /requests/%s", code, loc, id)
	}

	if rec := f.wait(t, id); rec.Status != operations.Succeeded {
		t.Fatalf("status %s, error %s %s", rec.Status, rec.ErrorCode, rec.ErrorMessage)
	}
	code, page := f.get(t, "/requests/"+id)
	if code != http.StatusOK {
		t.Fatalf("GET /requests/%s: %d", id, code)
	}
	for _, want := range []string{`class="status Succeeded"`, "https://contoso.sharepoint.com/sites/marketing",
		"&lt;b&gt;Megan&lt;/b&gt;", "&#34;status&#34;: &#34;modified&#34;", id} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	for _, bad := range []string{"<b>Megan", `http-equiv="refresh"`, "/cancel"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page of a completed request holds %q:\n%s", bad, page)
		}
	}
	// Cancelling it now says it completed.
	code, loc, _ := f.post(t, "/requests/"+id+"/cancel", nil)
	if code != http.StatusSeeOther || loc != "/requests/"+id+"?completed" {
		t.Fatalf("cancelling a completed request: %d %q", code, loc)
	}
	if _, page := f.get(t, loc); !strings.Contains(page, "cannot be cancelled") {
		t.Errorf("no notice:\n%s", page)
	}
}

// A running request's page refreshes and has a Cancel button, which
// cancels the operation.
func TestCancel(t *testing.T) {
	f := startWeb(t)
	id, _ := f.submit(t, "https://contoso.sharepoint.com/sites/slow", "Alex", "600000")
	_, page := f.get(t, "/requests/"+id)
	for _, want := range []string{`http-equiv="refresh" content="1"`, `action="/requests/` + id + `/cancel"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page of a running request lacks %q:\n%s", want, page)
		}
	}
	if code, loc, _ := f.post(t, "/requests/"+id+"/cancel", nil); code != http.StatusSeeOther || loc != "/requests/"+id {
		t.Fatalf("cancel: %d %q", code, loc)
	}
	if rec := f.wait(t, id); rec.Status != operations.Canceled {
		t.Fatalf("status %s, want Canceled", rec.Status)
	}
	if _, page := f.get(t, "/requests/"+id); !strings.Contains(page, `class="status Canceled"`) || strings.Contains(page, "/cancel") {
		t.Errorf("the page of a cancelled request:\n%s", page)
	}
}

// Bad input is refused on the form, cross-origin posts are refused, and an
// unknown request is 404.
func TestRefusals(t *testing.T) {
	f := startWeb(t)
	code, _, page := f.post(t, "/requests", url.Values{"siteUrl": {"https://x/y"}, "workMs": {"soon"}})
	if code != http.StatusBadRequest || !strings.Contains(page, "whole number of milliseconds") || !strings.Contains(page, `value="https://x/y"`) {
		t.Errorf("a bad workMs: %d\n%s", code, page)
	}
	page2, _ := f.c.List(context.Background(), operations.Query{})
	if len(page2.Records) != 0 {
		t.Errorf("a refused form submitted %d operations", len(page2.Records))
	}

	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/requests", strings.NewReader("siteUrl=https://x/y&workMs=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site post: %d, want 403", resp.StatusCode)
	}

	if code, _ := f.get(t, "/requests/01a2352d-bca6-7d14-a1be-21b8c136b541"); code != http.StatusNotFound {
		t.Errorf("an unknown request: %d, want 404", code)
	}
	if _, err := f.c.Get(context.Background(), "01a2352d-bca6-7d14-a1be-21b8c136b541"); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("store: %v", err)
	}
}
