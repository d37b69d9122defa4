package runtime

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// Every dropped notice is logged (warn) with what identifies it and the
// target without its query, and counted.
func TestCallbackDropsAreLoggedAndCounted(t *testing.T) {
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"hooks.example.com"}})
	for i := 0; i < cap(cb.sem); i++ { // 64 notices in flight
		cb.sem <- struct{}{}
	}
	for i := 1; i <= 3; i++ {
		cb.Post("https://hooks.example.com/cb?token=SECRETQ", sampleCompletion(fmt.Sprint("inv-over-", i)))
	}
	for range cap(cb.sem) {
		<-cb.sem
	}
	closeNow(t, cb)
	cb.Post("https://hooks.example.com/cb?token=SECRETQ", sampleCompletion("inv-late"))

	over := logs.FilterMessage("callback dropped: too many callbacks in flight").All()
	late := logs.FilterMessage("callback dropped: the host is stopping").All()
	if len(over) != 3 || len(late) != 1 {
		t.Fatalf("%d over-bound and %d late drops, want 3 and 1: %s", len(over), len(late), describeLogs(logs))
	}
	for i, e := range append(over, late...) {
		m := e.ContextMap()
		id := fmt.Sprint("inv-over-", i+1)
		if i == 3 {
			id = "inv-late"
		}
		if e.Level != zapcore.WarnLevel || m["invocationId"] != id || m["messageId"] != "msg-"+id ||
			m["function"] != "ProcessSiteModifyRequest" || m["url"] != "https://hooks.example.com/cb" || m["dropped"] != int64(i+1) {
			t.Errorf("drop %d = %s %v", i+1, e.Level, m)
		}
	}
	if n := cb.dropped.Load(); n != 4 {
		t.Errorf("dropped = %d, want 4", n)
	}
	assertNoSecrets(t, logs)
}

// Delivery is not exactly once: an attempt that times out after the
// receiver took the request is retried, so the receiver sees the notice
// twice, with the same invocation ID.
func TestCallbackRetryAfterTimeoutDuplicates(t *testing.T) {
	ids := make(chan string, 3)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only once the body is read
		ids <- r.Header.Get("X-Jobhost-Invocation-Id")
		if n.Add(1) == 1 { // the first: answer too late
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Timeout: 250 * time.Millisecond})
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-dup"))
	for i := 0; i < 2; i++ {
		if id := recv(t, ids, "a delivery"); id != "inv-dup" {
			t.Errorf("delivery %d carries invocation ID %q", i+1, id)
		}
	}
	closeNow(t, cb)
	if e := onlyEntry(t, logs, "callback sent"); e["attempts"] != int64(2) {
		t.Errorf("success entry = %v", e)
	}
}
