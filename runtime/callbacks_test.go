package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// callbackWait bounds every wait in these tests; nothing should come near it.
const callbackWait = 10 * time.Second

// newTestCallbacks returns a sender logging to an observer, with a 1 ms
// backoff base, closed when the test ends.
func newTestCallbacks(t *testing.T, s CallbackSettings) (*callbacks, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cb := newCallbacks(s, zap.New(core))
	cb.backoff = time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callbackWait)
		defer cancel()
		cb.Close(ctx)
	})
	return cb, logs
}

// closeNow closes cb, waiting for the posts under way.
func closeNow(t *testing.T, cb *callbacks) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		cb.Close(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(callbackWait):
		t.Fatal("Close did not return")
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(callbackWait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func sampleCompletion(id string) Completion {
	return Completion{
		InvocationID: id,
		Function:     "ProcessSiteModifyRequest",
		MessageID:    "msg-" + id,
		Status:       "succeeded",
		StartTime:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		EndTime:      time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC),
		Attempts:     1,
	}
}

// onlyEntry returns the one entry logged with msg.
func onlyEntry(t *testing.T, logs *observer.ObservedLogs, msg string) map[string]any {
	t.Helper()
	got := logs.FilterMessage(msg).All()
	if len(got) != 1 {
		t.Fatalf("want one %q log entry, got %d; all entries: %v", msg, len(got), describeLogs(logs))
	}
	return got[0].ContextMap()
}

func describeLogs(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&b, "\n  %s %q %v", e.Level, e.Message, e.ContextMap())
	}
	return b.String()
}

func TestCallbackBodyAndHeaders(t *testing.T) {
	type captured struct {
		method string
		header http.Header
		body   []byte
	}
	got := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{r.Method, r.Header.Clone(), b}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})

	c := sampleCompletion("inv-1")
	c.Status = "poisoned"
	c.Error = "boom"
	c.Attempts = 5
	c.Output = map[string]any{"site": "https://contoso.example"}
	cb.Post(srv.URL+"/done?sig=x", c)
	r := recv(t, got, "the callback request")

	if r.method != http.MethodPost {
		t.Errorf("method = %s, want POST", r.method)
	}
	for k, want := range map[string]string{
		"Content-Type":            "application/json",
		"User-Agent":              "jobhost",
		"X-Jobhost-Invocation-Id": "inv-1",
	} {
		if v := r.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.body)
	}
	want := map[string]any{
		"invocationId": "inv-1",
		"function":     "ProcessSiteModifyRequest",
		"messageId":    "msg-inv-1",
		"status":       "poisoned",
		"error":        "boom",
		"output":       map[string]any{"site": "https://contoso.example"},
		"startTime":    "2025-01-02T03:04:05Z",
		"endTime":      "2025-01-02T03:04:06Z",
		"attempts":     float64(5),
	}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("body =\n %v\nwant\n %v", m, want)
	}

	closeNow(t, cb)
	e := onlyEntry(t, logs, "callback sent")
	if e["attempts"] != int64(1) || e["statusCode"] != int64(204) || e["invocationId"] != "inv-1" {
		t.Errorf("success entry = %v", e)
	}
	if lvl := logs.FilterMessage("callback sent").All()[0].Level; lvl != zapcore.DebugLevel {
		t.Errorf("success logged at %s, want debug", lvl)
	}
}

func TestCallbackBodyOmitsEmpty(t *testing.T) {
	b, err := json.Marshal(sampleCompletion("x"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, `"error"`) || strings.Contains(s, `"output"`) {
		t.Errorf("empty error/output not omitted: %s", s)
	}
}

func TestCallbackRefusedIsLoggedNotSent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	cb, logs := newTestCallbacks(t, CallbackSettings{}) // default: nothing allowed
	cb.Post(srv.URL+"/cb?code=SECRETQ", sampleCompletion("inv-r"))
	closeNow(t, cb)
	if n := hits.Load(); n != 0 {
		t.Errorf("server got %d requests, want none", n)
	}
	e := onlyEntry(t, logs, "callback refused")
	for k, want := range map[string]string{
		"function": "ProcessSiteModifyRequest", "invocationId": "inv-r", "messageId": "msg-inv-r",
		"url": srv.URL + "/cb",
	} {
		if e[k] != want {
			t.Errorf("refusal %s = %v, want %q", k, e[k], want)
		}
	}
	if r, _ := e["reason"].(string); !strings.Contains(r, "allowedHosts is empty") {
		t.Errorf("refusal reason = %q", r)
	}
	if lvl := logs.FilterMessage("callback refused").All()[0].Level; lvl != zapcore.WarnLevel {
		t.Errorf("refusal logged at %s, want warn", lvl)
	}
}

func TestCallbackRetriesThenSucceeds(t *testing.T) {
	statuses := []int{500, 429, 408, 503, 200}
	var n atomic.Int32
	arrived := make(chan int, len(statuses)+5)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		arrived <- i
		if i < len(statuses) {
			w.WriteHeader(statuses[i])
		}
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, MaxAttempts: len(statuses)})
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-retry"))
	for i := range statuses {
		if got := recv(t, arrived, fmt.Sprintf("attempt %d", i+1)); got != i {
			t.Fatalf("attempt %d arrived as %d", i+1, got)
		}
	}
	closeNow(t, cb) // waits for the last attempt, under way
	if got := n.Load(); got != int32(len(statuses)) {
		t.Errorf("server got %d attempts, want %d", got, len(statuses))
	}
	e := onlyEntry(t, logs, "callback sent")
	if e["attempts"] != int64(len(statuses)) {
		t.Errorf("success entry attempts = %v, want %d", e["attempts"], len(statuses))
	}
	if f := logs.FilterMessage("callback failed").Len(); f != 0 {
		t.Errorf("%d failure entries for a callback that succeeded", f)
	}
}

func TestCallbackGivesUpAfterMaxAttempts(t *testing.T) {
	var n atomic.Int32
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		arrived <- struct{}{}
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)                                                                   // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}}) // default 3 attempts
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-3"))
	for i := 0; i < 3; i++ {
		recv(t, arrived, "an attempt")
	}
	closeNow(t, cb)
	if got := n.Load(); got != 3 {
		t.Errorf("server got %d attempts, want 3 (the default)", got)
	}
	e := onlyEntry(t, logs, "callback failed")
	if e["attempts"] != int64(3) || e["statusCode"] != int64(502) {
		t.Errorf("failure entry = %v", e)
	}
}

func TestCallbackClientErrorNotRetried(t *testing.T) {
	for _, status := range []int{400, 401, 404, 410, 422} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var n atomic.Int32
			arrived := make(chan struct{}, 10)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				arrived <- struct{}{}
				w.WriteHeader(status)
				io.WriteString(w, strings.Repeat("x", 200<<10)) // more than the 64 KiB read
			}))
			t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
			cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, MaxAttempts: 5})
			cb.Post(srv.URL+"/cb", sampleCompletion("inv-4xx"))
			recv(t, arrived, "the attempt")
			closeNow(t, cb)
			if got := n.Load(); got != 1 {
				t.Errorf("server got %d attempts, want 1", got)
			}
			e := onlyEntry(t, logs, "callback failed")
			if e["attempts"] != int64(1) || e["statusCode"] != int64(status) {
				t.Errorf("failure entry = %v", e)
			}
			if a := logs.FilterMessageSnippet("abandoned").Len(); a != 0 {
				t.Errorf("a %d was left to retry (abandoned at Close): %s", status, describeLogs(logs))
			}
		})
	}
}

func TestCallbackRedirectNotFollowed(t *testing.T) {
	var followed atomic.Int32
	arrived := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/cb", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-redir"))
	recv(t, arrived, "the attempt")
	closeNow(t, cb)
	if n := followed.Load(); n != 0 {
		t.Errorf("redirect followed %d times", n)
	}
	e := onlyEntry(t, logs, "callback failed")
	if e["statusCode"] != int64(307) || e["attempts"] != int64(1) || e["error"] != "redirect not followed" {
		t.Errorf("failure entry = %v", e)
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCallbackRetriesNetworkErrors(t *testing.T) {
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"hooks.example.com"}})
	arrived := make(chan string, 10)
	cb.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		arrived <- r.URL.String()
		return nil, errors.New("dial tcp: connection refused")
	})
	cb.Post("https://hooks.example.com/cb?token=SECRETQ", sampleCompletion("inv-net"))
	for i := 0; i < 3; i++ {
		if u := recv(t, arrived, "an attempt"); u != "https://hooks.example.com/cb?token=SECRETQ" {
			t.Errorf("attempt %d went to %q", i+1, u)
		}
	}
	closeNow(t, cb)
	e := onlyEntry(t, logs, "callback failed")
	if e["attempts"] != int64(3) || e["error"] != "dial tcp: connection refused" {
		t.Errorf("failure entry = %v", e)
	}
	assertNoSecrets(t, logs)
}

func TestCallbackCloseWaitsForInFlight(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-wait"))
	recv(t, arrived, "the request")

	closed := make(chan struct{})
	go func() {
		cb.Close(context.Background())
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while the POST was under way")
	case <-time.After(100 * time.Millisecond): // a window for a wrong Close to show itself
	}
	close(release)
	recv(t, closed, "Close")
	onlyEntry(t, logs, "callback sent") // logged before Close returned

	cb.Post(srv.URL+"/cb", sampleCompletion("inv-late"))
	e := onlyEntry(t, logs, "callback dropped: the host is stopping")
	if e["invocationId"] != "inv-late" {
		t.Errorf("drop entry = %v", e)
	}
}

func TestCallbackCloseAbandonsHangingPost(t *testing.T) {
	arrived := make(chan struct{}, 1)
	aborted := make(chan struct{}, 1)
	stopServer := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only once the body is read
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			aborted <- struct{}{}
		case <-stopServer:
		}
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	defer close(stopServer)
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Timeout: time.Hour})
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-hang"))
	recv(t, arrived, "the request")

	ctx, cancel := context.WithCancel(context.Background())
	closed := make(chan struct{})
	go func() {
		cb.Close(ctx)
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned before its context ended")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	recv(t, closed, "Close after its context ended")
	recv(t, aborted, "the server to see the request cancelled")
	e := onlyEntry(t, logs, "callbacks abandoned: shutdown time is up")
	if e["inFlight"] != int64(1) {
		t.Errorf("abandon entry = %v", e)
	}
	e = onlyEntry(t, logs, "callback abandoned: the host stopped")
	if e["invocationId"] != "inv-hang" || e["attempts"] != int64(1) {
		t.Errorf("abandoned post entry = %v", e)
	}
	if n := logs.FilterMessage("callback failed").Len(); n != 0 {
		t.Errorf("an abandoned post was logged as failed: %s", describeLogs(logs))
	}
}

func TestCallbackCloseStopsBackoff(t *testing.T) {
	var n atomic.Int32
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		arrived <- struct{}{}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})
	cb.backoff = time.Hour
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-backoff"))
	recv(t, arrived, "the first attempt")
	closeNow(t, cb) // must not wait for the hour
	if got := n.Load(); got != 1 {
		t.Errorf("server got %d attempts, want 1", got)
	}
	e := onlyEntry(t, logs, "callback abandoned: the host is stopping")
	if e["attempts"] != int64(1) || e["statusCode"] != int64(503) {
		t.Errorf("abandon entry = %v", e)
	}
}

// assertNoSecrets fails if any entry's message or field holds SECRET (the
// tests put it in query strings and userinfo) or a query string.
func assertNoSecrets(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		text := e.Message + " " + fmt.Sprint(e.ContextMap())
		if strings.Contains(text, "SECRET") || strings.Contains(text, "token=") || strings.Contains(text, "code=") {
			t.Errorf("log entry leaks a secret: %q %v", e.Message, e.ContextMap())
		}
	}
}

func TestCallbackLogsNeverContainQueryOrUserinfo(t *testing.T) {
	hang := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/x?token=SECRETQ", http.StatusFound)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only once the body is read
		select {
		case <-r.Context().Done():
		case <-hang:
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	defer close(hang)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on

	cb, logs := newTestCallbacks(t, CallbackSettings{
		AllowedHosts: []string{"127.0.0.1", "hooks.example.com"},
		MaxAttempts:  1,
		Timeout:      50 * time.Millisecond,
	})
	for _, u := range []string{
		// refused
		"http://user:SECRETPW@evil.example/cb?token=SECRETQ#SECRETF",
		"http://user:SECRETPW@hooks.example.com/cb?token=SECRETQ",
		"http://SECRETPW@hooks.example.com/cb?token=SECRETQ",
		"ftp://user:SECRETPW@hooks.example.com/cb?token=SECRETQ",
		"http://hooks.example.com:99999999/cb?token=SECRETQ", // unparseable
		"http://user:SECRETPW@hooks.example.com:99999999/cb?token=SECRETQ",
		"http://%zz:SECRETPW@hooks.example.com/cb?token=SECRETQ",
		"http://hooks.example.com/cb\x7f?token=SECRETQ",
		"http://hooks.example.com./cb?token=SECRETQ",
		// sent, and failing: 500, redirect, connection refused, timeout
		srv.URL + "/fail?token=SECRETQ",
		srv.URL + "/redirect?token=SECRETQ",
		deadURL + "/cb?token=SECRETQ&code=SECRETQ",
		srv.URL + "/hang?token=SECRETQ",
	} {
		cb.Post(u, sampleCompletion("inv-leak"))
	}
	closeNow(t, cb) // one attempt each: waits for all of them
	if n := logs.FilterMessage("callback refused").Len(); n != 9 {
		t.Errorf("%d refusals, want 9: %s", n, describeLogs(logs))
	}
	failed := logs.FilterMessage("callback failed").All()
	if len(failed) != 4 {
		t.Fatalf("%d failures, want 4: %s", len(failed), describeLogs(logs))
	}
	var timedOut bool
	for _, e := range failed {
		m := e.ContextMap()
		if e.Level != zapcore.WarnLevel || m["attempts"] != int64(1) || m["invocationId"] != "inv-leak" {
			t.Errorf("failure entry = %s %v", e.Level, m)
		}
		if u, _ := m["url"].(string); !strings.HasPrefix(u, "http://127.0.0.1:") || strings.ContainsAny(u, "?@") {
			t.Errorf("failure url = %q", u)
		}
		if m["error"] == "timed out after 50ms" {
			timedOut = true
		}
	}
	if !timedOut {
		t.Errorf("no timeout failure: %s", describeLogs(logs))
	}
	for _, e := range logs.FilterMessage("callback refused").All() {
		if u, _ := e.ContextMap()["url"].(string); !strings.Contains(u, "hooks.example.com") && !strings.Contains(u, "evil.example") {
			t.Errorf("refusal url = %q, want scheme://host/path", u)
		}
	}
	assertNoSecrets(t, logs)
	if t.Failed() {
		t.Log(describeLogs(logs))
	}
}

func TestCallbackDropsOverInFlightBound(t *testing.T) {
	arrived := make(chan struct{}, maxCallbacksInFlight)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})
	for i := 0; i < maxCallbacksInFlight; i++ {
		cb.Post(srv.URL+"/cb", sampleCompletion(fmt.Sprint("inv-", i)))
	}
	for i := 0; i < maxCallbacksInFlight; i++ {
		recv(t, arrived, "a request")
	}
	if maxCallbacksInFlight != 64 {
		t.Errorf("in-flight bound = %d, want 64", maxCallbacksInFlight)
	}

	posted := make(chan struct{})
	go func() {
		cb.Post(srv.URL+"/cb?token=SECRETQ", sampleCompletion("inv-over"))
		close(posted)
	}()
	recv(t, posted, "Post over the bound to return") // it must not block
	e := onlyEntry(t, logs, "callback dropped: too many callbacks in flight")
	if e["invocationId"] != "inv-over" || e["limit"] != int64(64) || e["url"] != srv.URL+"/cb" {
		t.Errorf("drop entry = %v", e)
	}
	if lvl := logs.FilterMessage("callback dropped: too many callbacks in flight").All()[0].Level; lvl != zapcore.WarnLevel {
		t.Errorf("drop logged at %s, want warn", lvl)
	}

	close(release)
	closeNow(t, cb)
	if n := logs.FilterMessage("callback sent").Len(); n != maxCallbacksInFlight {
		t.Errorf("%d sent, want %d", n, maxCallbacksInFlight)
	}
	assertNoSecrets(t, logs)
}

func TestCallbackPostNeverPanics(t *testing.T) {
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})
	c := sampleCompletion("inv-bad")
	c.Output = make(chan int) // not JSON
	cb.Post("http://127.0.0.1:1/cb", c)
	c.Output = panicky{}
	cb.Post("http://127.0.0.1:1/cb", c)
	if n := logs.FilterMessageSnippet("callback not sent").Len(); n != 2 {
		t.Errorf("%d not-sent entries, want 2: %s", n, describeLogs(logs))
	}
}

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("marshal") }

func TestCallbackSettingsDefaults(t *testing.T) {
	cb := newCallbacks(CallbackSettings{}, nil)
	defer cb.Close(context.Background())
	if cb.timeout != 10*time.Second || cb.maxAttempts != 3 || cb.backoff != time.Second {
		t.Errorf("defaults: timeout %s, attempts %d, backoff %s", cb.timeout, cb.maxAttempts, cb.backoff)
	}
	d := DefaultConfig().Callbacks
	if len(d.AllowedHosts) != 0 {
		t.Errorf("default allowlist = %v, want empty", d.AllowedHosts)
	}
}
