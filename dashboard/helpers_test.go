package dashboard_test

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/dashboard"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// source is a status.Source over memqueue queues: each function listens
// on memqueue queue <Queue> of its own broker, its poison queue is
// <Queue>-poison. It counts the poison administration calls.
type source struct {
	broker *memqueue.Broker
	ring   *status.Ring

	mu    sync.Mutex
	funcs []status.Function

	opens, lists   atomic.Int64
	counts         atomic.Int64 // Count calls of ProcessOrder's poison queue
	listN          atomic.Int64 // the n of the last List
	panicFunctions atomic.Bool
}

func newSource(funcs ...status.Function) *source {
	return &source{broker: memqueue.NewBroker(), ring: status.NewRing(1000), funcs: funcs}
}

func (s *source) Functions() []status.Function {
	if s.panicFunctions.Load() {
		panic("boom: a secret-looking panic AccountKey=abc")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.funcs)
}

func (s *source) update(name string, edit func(f *status.Function)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.funcs {
		if s.funcs[i].Name == name {
			edit(&s.funcs[i])
		}
	}
}

func (s *source) Invocations(f status.Filter) []status.Invocation { return s.ring.List(f) }

func (s *source) OpenPoison(ctx context.Context, function string) (triggers.PoisonAdmin, error) {
	s.opens.Add(1)
	for _, f := range s.Functions() {
		if f.Name == function && f.PoisonAdmin {
			adm, err := s.broker.OpenPoisonURL(ctx, &url.URL{Scheme: memqueue.Scheme, Host: f.Queue}, triggers.OpenOptions{})
			if err != nil {
				return nil, err
			}
			return &countingAdmin{PoisonAdmin: adm, s: s, fn: function}, nil
		}
	}
	return nil, errors.New("no poison administration for " + function)
}

// countingAdmin counts List and Count calls.
type countingAdmin struct {
	triggers.PoisonAdmin
	s  *source
	fn string
}

func (a *countingAdmin) List(ctx context.Context, n int) ([]*triggers.PoisonMessage, error) {
	a.s.lists.Add(1)
	a.s.listN.Store(int64(n))
	return a.PoisonAdmin.List(ctx, n)
}

func (a *countingAdmin) Count(ctx context.Context) (int, bool, error) {
	if a.fn == "ProcessOrder" {
		a.s.counts.Add(1)
	}
	return a.PoisonAdmin.Count(ctx)
}

// poison puts a message in a function's poison queue and returns its id.
func (s *source) poison(queue, body, reason string) string {
	return s.broker.Queue(queue+"-poison").Send([]byte(body), map[string]string{"x-jobhost-reason": reason})
}

// countingOps counts List calls of the operations it wraps.
type countingOps struct {
	client.Operations
	lists atomic.Int64
}

func (o *countingOps) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	o.lists.Add(1)
	return o.Operations.List(ctx, q)
}

// countingCounter counts CountByStatus calls.
type countingCounter struct {
	operations.Counter
	calls atomic.Int64
}

func (c *countingCounter) CountByStatus(ctx context.Context, name string) (map[operations.Status]int, error) {
	c.calls.Add(1)
	return c.Counter.CountByStatus(ctx, name)
}

// env is a dashboard served on a loopback port, over a memqueue source
// and a memstore.
type env struct {
	t       *testing.T
	srv     *httptest.Server
	src     *source
	store   *memstore.Store
	ops     *countingOps
	counter *countingCounter
	clock   *clock
	browser *browser
}

var (
	orders = status.Function{Name: "ProcessOrder", Queue: "orders", Broker: "memqueue", Poison: "orders-poison", PoisonAdmin: true,
		State: status.Listening, InFlight: 2, Concurrency: 24, Received: 12, Succeeded: 10, Failed: 2, Depth: 7,
		DepthAt: time.Date(2030, 5, 6, 7, 8, 0, 0, time.UTC)}
	provision = status.Function{Name: "Provision", Queue: "provision", Broker: "memqueue", Poison: "provision-poison", PoisonAdmin: true,
		State: status.Failing, Concurrency: 8, Depth: -1, LastError: "dial tcp: connection refused"}
)

// newEnv serves a dashboard with functions orders and provision; edit
// changes its options.
func newEnv(t *testing.T, edit func(o *dashboard.Options)) *env {
	t.Helper()
	e := &env{t: t, src: newSource(orders, provision), clock: &clock{now: time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)}}
	e.store = memstore.New(memstore.Options{Now: e.clock.Now})
	c, err := client.New(client.Options{Store: e.store, Now: e.clock.Now, Functions: []client.Function{
		{Name: "ProcessOrder", Queue: "memqueue://orders"}, {Name: "Provision", Queue: "memqueue://provision"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.ops = &countingOps{Operations: c}
	e.counter = &countingCounter{Counter: e.store}
	o := dashboard.Options{Source: e.src, Operations: e.ops, Counter: e.counter, Now: e.clock.Now}
	if edit != nil {
		edit(&o)
	}
	h, err := dashboard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	e.browser = newBrowser(t, e.srv.URL)
	return e
}

// browser is an HTTP client with cookies that does not follow redirects,
// and sends what a browser sends on a same-origin form post.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and returns the response with its body read.
func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		b.t.Fatal(err)
	}
	return resp, string(body)
}

func (b *browser) get(path string, header ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

// post sends a same-origin form post.
func (b *browser) post(path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf(?:-token)?" (?:value|content)="([^"]+)"`)

// token returns the CSRF token of a page.
func token(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no CSRF token:\n%s", page)
	}
	return m[1]
}

// wantStatus fails unless resp has the status.
func wantStatus(t *testing.T, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body:\n%s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, body)
	}
}

// wantError checks a JSON error answer's status and field.
func wantError(t *testing.T, resp *http.Response, body string, status int, field string) {
	t.Helper()
	wantStatus(t, resp, body, status)
	if field != "" && !strings.Contains(body, `"field":"`+field+`"`) && !strings.Contains(body, `<span class="mono field">`+field+`</span>`) {
		t.Errorf("%s %s: the error does not name field %q:\n%s", resp.Request.Method, resp.Request.URL.Path, field, body)
	}
}

func clientSubmission(function string) client.Submission {
	return client.Submission{Function: function, Input: []byte(`{"site":"hr"}`)}
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func regexpFind(t *testing.T, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%s not found in:\n%s", re, s)
	}
	return m[1]
}

func htmlUnescape(s string) string { return html.UnescapeString(s) }
