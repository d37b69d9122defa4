package azurequeue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// fakeService answers azqueue requests without a network, recording them.
type fakeService struct {
	mu       sync.Mutex
	requests []string // "METHOD path?query"
	bodies   []string
	handle   func(r *http.Request) (*http.Response, error)
}

func (f *fakeService) Do(r *http.Request) (*http.Response, error) {
	var body string
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
	}
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	return f.handle(r)
}

func (f *fakeService) count(method, pathSuffix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		m, rest, _ := strings.Cut(r, " ")
		p, _, _ := strings.Cut(rest, "?")
		if m == method && strings.HasSuffix(p, pathSuffix) {
			n++
		}
	}
	return n
}

func (f *fakeService) last() (req, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1], f.bodies[len(f.bodies)-1]
}

// fakeDriver returns a driver on queue "orders" of a fake SAS-authenticated
// account whose signature is secretSig.
func fakeDriver(t *testing.T, handle func(r *http.Request) (*http.Response, error)) (*azurequeue.Driver, *fakeService) {
	t.Helper()
	f := &fakeService{handle: handle}
	svc, err := azqueue.NewServiceClientWithNoCredential("https://acct.queue.example/?sv=2022-11-02&sig="+secretSig, &azqueue.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: f, Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return azurequeue.New(svc, "orders", azurequeue.Options{}), f
}

func respond(r *http.Request, status int, header map[string]string, body string) *http.Response {
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	if body != "" {
		h.Set("Content-Type", "application/xml")
	}
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r,
	}
}

func storageError(r *http.Request, status int, code string) *http.Response {
	return respond(r, status, map[string]string{"x-ms-error-code": code},
		`<?xml version="1.0" encoding="utf-8"?><Error><Code>`+code+`</Code><Message>Service says `+code+`.
RequestId:1</Message></Error>`)
}

var rfc1123 = func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func dequeueBody(text string) string {
	now := time.Now()
	return `<?xml version="1.0" encoding="utf-8"?><QueueMessagesList><QueueMessage>` +
		`<MessageId>m1</MessageId><InsertionTime>` + rfc1123(now) + `</InsertionTime>` +
		`<ExpirationTime>` + rfc1123(now.Add(7*24*time.Hour)) + `</ExpirationTime>` +
		`<PopReceipt>pr1</PopReceipt><TimeNextVisible>` + rfc1123(now.Add(time.Minute)) + `</TimeNextVisible>` +
		`<DequeueCount>1</DequeueCount><MessageText>` + text + `</MessageText></QueueMessage></QueueMessagesList>`
}

func enqueueBody(id string) string {
	now := time.Now()
	return `<?xml version="1.0" encoding="utf-8"?><QueueMessagesList><QueueMessage>` +
		`<MessageId>` + id + `</MessageId><InsertionTime>` + rfc1123(now) + `</InsertionTime>` +
		`<ExpirationTime>` + rfc1123(now.Add(7*24*time.Hour)) + `</ExpirationTime>` +
		`<PopReceipt>x</PopReceipt><TimeNextVisible>` + rfc1123(now) + `</TimeNextVisible></QueueMessage></QueueMessagesList>`
}

// received returns a message as Receive made it, via the fake.
func received(t *testing.T, d *azurequeue.Driver) *triggers.Message {
	t.Helper()
	ms, err := d.Receive(context.Background(), 1, time.Minute)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Receive = %v, %v", ms, err)
	}
	return ms[0]
}

func TestReceiveRequest(t *testing.T) {
	var mu sync.Mutex
	var queries []url.Values
	d, _ := fakeDriver(t, func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		return respond(r, 200, nil, dequeueBody("aGk=")), nil
	})
	for _, tc := range []struct {
		max        int
		lease      time.Duration
		wantN, vis string
	}{
		{100, 1200 * time.Millisecond, "32", "2"},
		{0, 0, "1", "1"},
		{5, 30 * 24 * time.Hour, "5", "604800"},
		{32, 10 * time.Minute, "32", "600"},
	} {
		ms, err := d.Receive(context.Background(), tc.max, tc.lease)
		if err != nil {
			t.Fatal(err)
		}
		q := queries[len(queries)-1]
		if q.Get("numofmessages") != tc.wantN || q.Get("visibilitytimeout") != tc.vis {
			t.Errorf("Receive(%d, %v) sent %v, want numofmessages=%s visibilitytimeout=%s", tc.max, tc.lease, q, tc.wantN, tc.vis)
		}
		m := ms[0]
		if m.ID != "m1" || m.Text() != "aGk=" || m.PopReceipt != "pr1" || m.DequeueCount != 1 || m.Source != "orders" ||
			m.InsertionTime.IsZero() || m.ExpirationTime.IsZero() || m.NextVisibleTime.IsZero() {
			t.Errorf("message = %+v", m)
		}
	}
}

func TestUpdateStoresReceiptAndResendsText(t *testing.T) {
	next := time.Now().Add(time.Hour).Truncate(time.Second)
	var mu sync.Mutex
	receipt := 1
	d, f := fakeDriver(t, func(r *http.Request) (*http.Response, error) {
		switch r.Method {
		case http.MethodGet:
			return respond(r, 200, nil, dequeueBody("original &amp; text")), nil
		case http.MethodPut:
			mu.Lock()
			defer mu.Unlock()
			if got, want := r.URL.Query().Get("popreceipt"), fmt.Sprintf("pr%d", receipt); got != want {
				return storageError(r, 400, "PopReceiptMismatch"), nil
			}
			receipt++
			return respond(r, 204, map[string]string{"x-ms-popreceipt": fmt.Sprintf("pr%d", receipt), "x-ms-time-next-visible": rfc1123(next)}, ""), nil
		case http.MethodDelete:
			if r.URL.Query().Get("popreceipt") != fmt.Sprintf("pr%d", receipt) {
				return storageError(r, 400, "PopReceiptMismatch"), nil
			}
			return respond(r, 204, nil, ""), nil
		}
		return storageError(r, 400, "InvalidInput"), nil
	})
	m := received(t, d)
	m.Body[0] = 'X' // the runtime or function may scribble on Body
	if err := d.ExtendLease(context.Background(), m, 1500*time.Millisecond); err != nil {
		t.Fatalf("ExtendLease: %v", err)
	}
	req, body := f.last()
	if !strings.Contains(req, "visibilitytimeout=2") || !strings.Contains(body, "<MessageText>original &amp; text</MessageText>") {
		t.Errorf("ExtendLease sent %s with body %s", req, body)
	}
	if m.PopReceipt != "pr2" || !m.NextVisibleTime.Equal(next) {
		t.Errorf("after ExtendLease PopReceipt=%q NextVisibleTime=%v", m.PopReceipt, m.NextVisibleTime)
	}
	if err := d.Retry(context.Background(), m, 0); err != nil {
		t.Fatalf("Retry(0): %v", err)
	}
	if req, _ := f.last(); !strings.Contains(req, "visibilitytimeout=0") {
		t.Errorf("Retry(0) sent %s", req)
	}
	if err := d.Retry(context.Background(), m, 2500*time.Millisecond); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if req, _ := f.last(); !strings.Contains(req, "visibilitytimeout=3") {
		t.Errorf("Retry(2.5s) sent %s", req)
	}
	if err := d.Complete(context.Background(), m); err != nil {
		t.Fatalf("Complete with the latest receipt: %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	type op struct {
		name string
		run  func(d *azurequeue.Driver, m *triggers.Message) error
	}
	receive := op{"Receive", func(d *azurequeue.Driver, _ *triggers.Message) error {
		_, err := d.Receive(context.Background(), 1, time.Minute)
		return err
	}}
	complete := op{"Complete", func(d *azurequeue.Driver, m *triggers.Message) error { return d.Complete(context.Background(), m) }}
	extend := op{"ExtendLease", func(d *azurequeue.Driver, m *triggers.Message) error {
		return d.ExtendLease(context.Background(), m, time.Minute)
	}}
	retry := op{"Retry", func(d *azurequeue.Driver, m *triggers.Message) error { return d.Retry(context.Background(), m, 0) }}
	send := op{"Send", func(d *azurequeue.Driver, _ *triggers.Message) error {
		_, err := d.Send(context.Background(), "x")
		return err
	}}
	tests := []struct {
		op           op
		status       int
		code         string
		notFound     bool
		leaseLost    bool
		wantInErrStr string
	}{
		{receive, 404, "QueueNotFound", true, false, "404 QueueNotFound: Service says QueueNotFound."},
		{send, 404, "QueueNotFound", true, false, "queue not found"},
		{receive, 403, "AuthenticationFailed", false, false, "403 AuthenticationFailed"},
		{receive, 500, "InternalError", false, false, "500 InternalError"},
		{complete, 404, "MessageNotFound", false, true, "message lease lost: 404 MessageNotFound"},
		{complete, 400, "PopReceiptMismatch", false, true, "400 PopReceiptMismatch"},
		{complete, 404, "", false, true, "404"},
		{complete, 404, "QueueNotFound", true, true, "404 QueueNotFound"},
		{extend, 404, "MessageNotFound", false, true, "extend lease of message m1"},
		{extend, 400, "PopReceiptMismatch", false, true, "PopReceiptMismatch"},
		{retry, 404, "MessageNotFound", false, true, "retry message m1"},
		{retry, 403, "AuthorizationFailure", false, false, "403 AuthorizationFailure"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d%s", tc.op.name, tc.status, tc.code), func(t *testing.T) {
			d, _ := fakeDriver(t, func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodGet && tc.op.name != "Receive" {
					return respond(r, 200, nil, dequeueBody("body")), nil
				}
				return storageError(r, tc.status, tc.code), nil
			})
			var m *triggers.Message
			if tc.op.name != "Receive" && tc.op.name != "Send" {
				m = received(t, d)
			}
			err := tc.op.run(d, m)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, triggers.ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v, want %v: %v", got, tc.notFound, err)
			}
			if got := errors.Is(err, triggers.ErrLeaseLost); got != tc.leaseLost {
				t.Errorf("errors.Is(ErrLeaseLost) = %v, want %v: %v", got, tc.leaseLost, err)
			}
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.StatusCode != tc.status {
				t.Errorf("original *azcore.ResponseError not in the chain: %v", err)
			}
			if !strings.Contains(err.Error(), tc.wantInErrStr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error text %q: want one line containing %q", err, tc.wantInErrStr)
			}
			assertNoSecret(t, "error", err.Error())
		})
	}
}

func TestTransportErrorIsRedacted(t *testing.T) {
	d, _ := fakeDriver(t, func(r *http.Request) (*http.Response, error) {
		return nil, &url.Error{Op: "Get", URL: r.URL.String(), Err: errors.New("dial tcp 10.0.0.1:443: connect: connection refused")}
	})
	_, err := d.Receive(context.Background(), 1, time.Minute)
	if err == nil {
		t.Fatal("no error")
	}
	if errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("transport error maps to ErrNotFound: %v", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("*url.Error not in the chain: %v", err)
	}
	if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "REDACTED") {
		t.Errorf("error = %v", err)
	}
	assertNoSecret(t, "error", err.Error())
}

func TestDeadLetterEnqueueFailureKeepsOriginal(t *testing.T) {
	d, f := fakeDriver(t, func(r *http.Request) (*http.Response, error) {
		switch {
		case r.Method == http.MethodGet:
			return respond(r, 200, nil, dequeueBody("body")), nil
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/orders-poison"):
			return respond(r, 201, nil, ""), nil
		case r.Method == http.MethodPost:
			return storageError(r, 500, "InternalError"), nil
		}
		return respond(r, 204, nil, ""), nil
	})
	m := received(t, d)
	id, err := d.DeadLetter(context.Background(), m, "test")
	if err == nil || id != "" {
		t.Fatalf("DeadLetter = %q, %v; want an error", id, err)
	}
	if errors.Is(err, triggers.ErrLeaseLost) || errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("poison enqueue failure maps to a sentinel: %v", err)
	}
	if n := f.count(http.MethodDelete, "/m1"); n != 0 {
		t.Errorf("original deleted %d times after a failed poison enqueue", n)
	}
	assertNoSecret(t, "error", err.Error())
}

func TestDeadLetterCreatesPoisonQueueOnce(t *testing.T) {
	d, f := fakeDriver(t, func(r *http.Request) (*http.Response, error) {
		switch {
		case r.Method == http.MethodGet:
			return respond(r, 200, nil, dequeueBody("body &lt;x&gt;")), nil
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/orders-poison"):
			// Another host created it with other metadata.
			return storageError(r, 409, "QueueAlreadyExists"), nil
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/orders-poison/messages"):
			return respond(r, 201, nil, enqueueBody("p1")), nil
		case r.Method == http.MethodDelete:
			return respond(r, 204, nil, ""), nil
		}
		return storageError(r, 400, "InvalidInput"), nil
	})
	var wg sync.WaitGroup
	for range 10 {
		m := received(t, d)
		wg.Go(func() {
			id, err := d.DeadLetter(context.Background(), m, "test")
			if err != nil || id != "p1" {
				t.Errorf("DeadLetter = %q, %v", id, err)
			}
		})
	}
	wg.Wait()
	if n := f.count(http.MethodPut, "/orders-poison"); n != 1 {
		t.Errorf("poison queue created %d times, want 1", n)
	}
	if n := f.count(http.MethodDelete, "/orders/messages/m1"); n != 10 {
		t.Errorf("originals deleted %d times, want 10", n)
	}
	for i, r := range f.requests {
		if strings.HasPrefix(r, "POST") && !strings.Contains(f.bodies[i], "<MessageText>body &lt;x&gt;</MessageText>") {
			t.Errorf("poison copy body = %s", f.bodies[i])
		}
	}
}

func TestDeadLetterRefusedWithoutPoisonQueue(t *testing.T) {
	f := &fakeService{handle: func(r *http.Request) (*http.Response, error) {
		return respond(r, 200, nil, dequeueBody("b")), nil
	}}
	svc, _ := azqueue.NewServiceClientWithNoCredential("https://acct.queue.example/", &azqueue.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: f, Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	d := azurequeue.New(svc, strings.Repeat("q", 60), azurequeue.Options{})
	if d.PoisonDestination() != "" {
		t.Fatalf("PoisonDestination() = %q", d.PoisonDestination())
	}
	ms, err := d.Receive(context.Background(), 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	n := len(f.requests)
	if _, err := d.DeadLetter(context.Background(), ms[0], "x"); !errors.Is(err, azurequeue.ErrNoPoisonQueue) {
		t.Errorf("DeadLetter: %v, want ErrNoPoisonQueue", err)
	}
	if len(f.requests) != n {
		t.Errorf("DeadLetter without a poison queue made requests: %v", f.requests[n:])
	}
}
