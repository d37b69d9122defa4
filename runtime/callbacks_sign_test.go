package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jobhost/jobhost/webhook"
)

// fakeClock replaces a sender's clock and pause: a pause records its delay
// and moves the clock on by it, at once. No test waits for real time.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	delays []time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) pause(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delays = append(c.delays, d)
	c.t = c.t.Add(d)
	return true
}

func (c *fakeClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.delays...)
}

var clockStart = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// newClockedCallbacks is newTestCallbacks with a fake clock, the jitter at
// its middle (factor 1) and the real 1 s backoff base.
func newClockedCallbacks(t *testing.T, s CallbackSettings) (*callbacks, *observer.ObservedLogs, *fakeClock) {
	t.Helper()
	cb, logs := newTestCallbacks(t, s)
	clk := &fakeClock{t: clockStart}
	cb.now, cb.pause, cb.jitter = clk.now, clk.pause, func() float64 { return 0.5 }
	cb.backoff = time.Second
	return cb, logs, clk
}

func testSecrets(t *testing.T, n int) (string, []webhook.Secret) {
	t.Helper()
	var texts []string
	for range n {
		s, err := webhook.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, s)
	}
	secrets, err := webhook.ParseSecrets(strings.Join(texts, " "))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(texts, " "), secrets
}

// delivery is one request a test server received.
type delivery struct {
	header http.Header
	body   []byte
}

// recordingServer answers each request with the next of statuses (200 once
// they run out), after the headers of the same index in extra, and sends
// every request it gets on the returned channel.
func recordingServer(t *testing.T, statuses []int, extra []http.Header) (*httptest.Server, <-chan delivery) {
	t.Helper()
	ch := make(chan delivery, len(statuses)+10)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		i := int(n.Add(1)) - 1
		ch <- delivery{r.Header.Clone(), b}
		if i < len(extra) {
			for k, v := range extra[i] {
				w.Header()[k] = v
			}
		}
		if i < len(statuses) {
			w.WriteHeader(statuses[i])
		}
	}))
	t.Cleanup(srv.Close) // after cb's Close, which ends hanging requests
	return srv, ch
}

// Every signed POST verifies on the receiver's side with webhook.Verify,
// under each of the sender's secrets (rotation), and only at its time.
func TestCallbackSignedVerifies(t *testing.T) {
	_, secrets := testSecrets(t, 2)
	srv, got := recordingServer(t, nil, nil)
	cb, logs, _ := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Secrets: secrets})
	cb.Post(srv.URL+"/done", sampleCompletion("inv-signed"))
	d := recv(t, got, "the callback")
	closeNow(t, cb)

	id := d.header.Get("webhook-id")
	if !strings.HasPrefix(id, "msg_") || len(id) != len("msg_")+26 {
		t.Errorf("webhook-id = %q, want msg_ and 26 characters", id)
	}
	if ts := d.header.Get("webhook-timestamp"); ts != strconv.FormatInt(clockStart.Unix(), 10) {
		t.Errorf("webhook-timestamp = %q, want %d", ts, clockStart.Unix())
	}
	if sigs := strings.Fields(d.header.Get("webhook-signature")); len(sigs) != 2 ||
		!strings.HasPrefix(sigs[0], "v1,") || !strings.HasPrefix(sigs[1], "v1,") {
		t.Errorf("webhook-signature = %q, want two v1 entries", d.header.Get("webhook-signature"))
	}
	if v := d.header.Get("X-Jobhost-Invocation-Id"); v != "inv-signed" {
		t.Errorf("X-Jobhost-Invocation-Id = %q", v)
	}
	for i, s := range secrets {
		if err := webhook.Verify([]webhook.Secret{s}, d.header, d.body, 0, clockStart.Add(time.Second)); err != nil {
			t.Errorf("secret %d: %v", i+1, err)
		}
	}
	var c Completion
	if err := json.Unmarshal(d.body, &c); err != nil || c.InvocationID != "inv-signed" {
		t.Errorf("body = %s (%v)", d.body, err)
	}
	// A receiver checking against the real clock rejects it: the signed
	// timestamp is the sender's clock, and it is far from now.
	if err := webhook.Verify(secrets, d.header, d.body, 0, time.Now()); !errors.Is(err, webhook.ErrTimestamp) {
		t.Errorf("Verify against the real clock = %v, want ErrTimestamp", err)
	}
	_, other := testSecrets(t, 1)
	if err := webhook.Verify(other, d.header, d.body, 0, clockStart); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("Verify with another secret = %v, want ErrSignature", err)
	}
	if e := onlyEntry(t, logs, "callback sent"); e["webhookId"] != id {
		t.Errorf("success entry = %v, want webhookId %s", e, id)
	}
}

// Without secrets nothing is signed, as before signing existed.
func TestCallbackUnsignedWithoutSecret(t *testing.T) {
	srv, got := recordingServer(t, nil, nil)
	cb, logs, _ := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})
	cb.Post(srv.URL+"/done", sampleCompletion("inv-plain"))
	d := recv(t, got, "the callback")
	closeNow(t, cb)
	for k := range d.header {
		if strings.HasPrefix(strings.ToLower(k), "webhook-") {
			t.Errorf("unsigned callback carries %s", k)
		}
	}
	if e := onlyEntry(t, logs, "callback sent"); e["webhookId"] != nil {
		t.Errorf("success entry = %v", e)
	}
}

// The webhook-id is the same on every attempt of a notice; each attempt has
// its own timestamp and signature; two notices have two ids.
func TestCallbackSignedIDStableAcrossRetries(t *testing.T) {
	_, secrets := testSecrets(t, 1)
	srv, got := recordingServer(t, []int{500, 503, 408, 204}, nil)
	cb, logs, clk := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Secrets: secrets, MaxAttempts: 4})
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-retry"))
	var ds []delivery
	for i := range 4 {
		ds = append(ds, recv(t, got, fmt.Sprintf("attempt %d", i+1)))
	}
	closeNow(t, cb)
	wantWaits := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	if w := clk.waits(); fmt.Sprint(w) != fmt.Sprint(wantWaits) {
		t.Errorf("waits = %v, want %v", w, wantWaits)
	}
	at := clockStart
	id := ds[0].header.Get("webhook-id")
	for i, d := range ds {
		if i > 0 {
			at = at.Add(wantWaits[i-1])
		}
		if g := d.header.Get("webhook-id"); g != id {
			t.Errorf("attempt %d: webhook-id %q, want %q (the first attempt's)", i+1, g, id)
		}
		if ts := d.header.Get("webhook-timestamp"); ts != strconv.FormatInt(at.Unix(), 10) {
			t.Errorf("attempt %d: webhook-timestamp %s, want %d", i+1, ts, at.Unix())
		}
		if err := webhook.Verify(secrets, d.header, d.body, time.Second, at); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	if ds[0].header.Get("webhook-signature") == ds[1].header.Get("webhook-signature") {
		t.Error("two attempts at different times carry the same signature")
	}
	if e := onlyEntry(t, logs, "callback sent"); e["attempts"] != int64(4) {
		t.Errorf("success entry = %v", e)
	}
	if n := logs.FilterMessage("callback attempt failed, retrying").Len(); n != 3 {
		t.Errorf("%d retry entries, want 3: %s", n, describeLogs(logs))
	}

	// Another notice: another id.
	srv2, got2 := recordingServer(t, nil, nil)
	cb2, _, _ := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Secrets: secrets})
	cb2.Post(srv2.URL+"/cb", sampleCompletion("inv-retry"))
	cb2.Post(srv2.URL+"/cb", sampleCompletion("inv-other"))
	a, b := recv(t, got2, "a notice"), recv(t, got2, "a notice")
	closeNow(t, cb2)
	if a.header.Get("webhook-id") == b.header.Get("webhook-id") || a.header.Get("webhook-id") == id {
		t.Errorf("notices share a webhook-id: %q %q %q", id, a.header.Get("webhook-id"), b.header.Get("webhook-id"))
	}
}

// 410 Gone: one attempt, one log entry, no retry, whatever maxAttempts.
func TestCallbackGoneStopsAtOnce(t *testing.T) {
	_, secrets := testSecrets(t, 1)
	srv, got := recordingServer(t, []int{410, 200}, []http.Header{{"Retry-After": {"1"}}})
	cb, logs, clk := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Secrets: secrets, MaxAttempts: 10})
	cb.Post(srv.URL+"/cb", sampleCompletion("inv-gone"))
	d := recv(t, got, "the attempt")
	closeNow(t, cb)
	select {
	case <-got:
		t.Error("a 410 was retried")
	default:
	}
	if err := webhook.Verify(secrets, d.header, d.body, 0, clockStart); err != nil {
		t.Errorf("the attempt does not verify: %v", err)
	}
	if w := clk.waits(); len(w) != 0 {
		t.Errorf("waited %v after a 410", w)
	}
	e := onlyEntry(t, logs, "callback failed")
	if e["attempts"] != int64(1) || e["statusCode"] != int64(410) || !strings.Contains(fmt.Sprint(e["error"]), "410 Gone") {
		t.Errorf("failure entry = %v", e)
	}
	if len(logs.All()) != 1 {
		t.Errorf("want the failure entry only: %s", describeLogs(logs))
	}
}

// A redirect is a failure, not followed and not retried, signed or not.
func TestCallbackSignedRedirectNotFollowed(t *testing.T) {
	_, secrets := testSecrets(t, 1)
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var followed, hits atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/cb", func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				http.Redirect(w, r, "/elsewhere", status)
			})
			mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			cb, logs, clk := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Secrets: secrets, MaxAttempts: 5})
			cb.Post(srv.URL+"/cb", sampleCompletion("inv-redir"))
			closeNow(t, cb)
			if hits.Load() != 1 || followed.Load() != 0 || len(clk.waits()) != 0 {
				t.Errorf("hits %d, followed %d, waits %v", hits.Load(), followed.Load(), clk.waits())
			}
			e := onlyEntry(t, logs, "callback failed")
			if e["statusCode"] != int64(status) || e["error"] != "redirect not followed" {
				t.Errorf("failure entry = %v", e)
			}
		})
	}
}

// A 429 or 503 with Retry-After (seconds or an HTTP date) waits that long,
// capped at the maximum backoff; other statuses, and unreadable values, get
// the backoff.
func TestCallbackRetryAfterHonoured(t *testing.T) {
	date := func(d time.Duration) string { return clockStart.Add(d).Format(http.TimeFormat) }
	for _, c := range []struct {
		name   string
		status int
		value  string
		want   time.Duration
	}{
		{"429 seconds", 429, "7", 7 * time.Second},
		{"503 seconds", 503, "12", 12 * time.Second},
		{"429 zero", 429, "0", 0},
		{"503 date", 503, date(30 * time.Second), 30 * time.Second},
		{"429 date", 429, date(45 * time.Second), 45 * time.Second},
		{"503 past date", 503, date(-time.Hour), 0},
		{"429 seconds over the cap", 429, "3600", callbackMaxBackoff},
		{"429 huge", 429, "99999999999999999999999", callbackMaxBackoff},
		{"503 date over the cap", 503, date(time.Hour), callbackMaxBackoff},
		{"429 unreadable", 429, "soon", time.Second},
		{"429 negative", 429, "-5", time.Second},
		{"429 fraction", 429, "1.5", time.Second},
		{"503 none", 503, "", time.Second},
		{"500 ignores it", 500, "7", time.Second},
		{"408 ignores it", 408, "7", time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			var extra []http.Header
			if c.value != "" {
				extra = []http.Header{{"Retry-After": {c.value}}}
			}
			srv, got := recordingServer(t, []int{c.status, 204}, extra)
			cb, logs, clk := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}})
			cb.Post(srv.URL+"/cb", sampleCompletion("inv-ra"))
			recv(t, got, "attempt 1")
			recv(t, got, "attempt 2")
			closeNow(t, cb)
			if w := clk.waits(); len(w) != 1 || w[0] != c.want {
				t.Errorf("waits = %v, want [%s]", w, c.want)
			}
			if e := onlyEntry(t, logs, "callback attempt failed, retrying"); e["delayMs"] != c.want.Milliseconds() {
				t.Errorf("retry entry = %v", e)
			}
			onlyEntry(t, logs, "callback sent")
		})
	}
}

// The backoff doubles from its base, is spread ±20%, and never passes the
// cap.
func TestCallbackBackoffJitter(t *testing.T) {
	cb, _ := newTestCallbacks(t, CallbackSettings{})
	cb.backoff = time.Second
	none := attemptResult{status: 500, retryAfter: -1}
	for _, c := range []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{1, 0, 800 * time.Millisecond},
		{1, 0.5, time.Second},
		{1, 0.999999, 1200 * time.Millisecond},
		{2, 0, 1600 * time.Millisecond},
		{3, 0.5, 4 * time.Second},
		{3, 0.999999, 4800 * time.Millisecond},
		{6, 0.5, 32 * time.Second},
		{6, 0.999999, 38400 * time.Millisecond},
		{7, 0, 48 * time.Second}, // 64 s capped to 60, then spread
		{7, 0.5, time.Minute},
		{7, 0.999999, time.Minute}, // never past the cap
		{20, 0.25, 54 * time.Second},
		{1000, 0.5, time.Minute},
	} {
		cb.jitter = func() float64 { return c.jitter }
		got := cb.retryDelay(c.attempt, none)
		if d := got - c.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("attempt %d, jitter %v: %s, want %s", c.attempt, c.jitter, got, c.want)
		}
	}
	// The real random source: within ±20%, and not constant.
	cb.jitter = newCallbacks(CallbackSettings{}, nil).jitter
	seen := map[time.Duration]bool{}
	for range 200 {
		d := cb.retryDelay(2, none)
		if d < 1600*time.Millisecond || d >= 2400*time.Millisecond {
			t.Fatalf("delay %s outside 2 s ±20%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays in 200: no jitter", len(seen))
	}
	// Close interrupts the real pause.
	closeNow(t, cb)
	if cb.wait(time.Hour) {
		t.Error("wait after Close returned true")
	}
}

// PostJSON sends any payload the way Post sends a completion: signed with
// the given id, checked against the allowlist, logged with the caller's
// fields.
func TestCallbackPostJSON(t *testing.T) {
	_, secrets := testSecrets(t, 1)
	srv, got := recordingServer(t, []int{503, 200}, nil)
	cb, logs, _ := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Secrets: secrets})
	type opNotice struct {
		OperationID string `json:"operationId"`
		StatusCode  int    `json:"statusCode"`
	}
	cb.PostJSON(srv.URL+"/ops?code=SECRETQ", opNotice{"op-1", 30}, "op-1.completed", zap.String("operationId", "op-1"))
	first, second := recv(t, got, "attempt 1"), recv(t, got, "attempt 2")
	closeNow(t, cb)
	for i, d := range []delivery{first, second} {
		if d.header.Get("webhook-id") != "op-1.completed" || d.header.Get("Content-Type") != "application/json" ||
			d.header.Get("X-Jobhost-Invocation-Id") != "" {
			t.Errorf("attempt %d headers = %v", i+1, d.header)
		}
		if string(d.body) != `{"operationId":"op-1","statusCode":30}` {
			t.Errorf("attempt %d body = %s", i+1, d.body)
		}
		if err := webhook.Verify(secrets, d.header, d.body, time.Minute, clockStart); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	e := onlyEntry(t, logs, "callback sent")
	if e["operationId"] != "op-1" || e["webhookId"] != "op-1.completed" || e["url"] != srv.URL+"/ops" || e["attempts"] != int64(2) {
		t.Errorf("success entry = %v", e)
	}

	// The rules hold: a host outside the allowlist, a bad id, a payload
	// that is not JSON; a missing id is made.
	cb2, logs2, _ := newClockedCallbacks(t, CallbackSettings{AllowedHosts: []string{"127.0.0.1"}, Secrets: secrets})
	srv2, got2 := recordingServer(t, nil, nil)
	cb2.PostJSON("https://evil.example/x?token=SECRETQ", opNotice{}, "id-1")
	cb2.PostJSON(srv2.URL+"/x", opNotice{}, "has space")
	cb2.PostJSON(srv2.URL+"/x", opNotice{}, strings.Repeat("x", 257))
	cb2.PostJSON(srv2.URL+"/x", opNotice{}, "line\nbreak")
	cb2.PostJSON(srv2.URL+"/x", make(chan int), "id-2")
	cb2.PostJSON(srv2.URL+"/x", opNotice{OperationID: "op-2"}, "")
	d := recv(t, got2, "the notice with a made id")
	closeNow(t, cb2)
	if id := d.header.Get("webhook-id"); !strings.HasPrefix(id, "msg_") {
		t.Errorf("made webhook-id = %q", id)
	}
	if n := logs2.FilterMessage("callback refused").Len(); n != 1 {
		t.Errorf("%d refusals, want 1: %s", n, describeLogs(logs2))
	}
	if n := logs2.FilterMessageSnippet("the id is not").Len(); n != 3 {
		t.Errorf("%d bad-id entries, want 3: %s", n, describeLogs(logs2))
	}
	if n := logs2.FilterMessage("callback not sent: the payload cannot be encoded as JSON").Len(); n != 1 {
		t.Errorf("not-JSON entries: %s", describeLogs(logs2))
	}
	select {
	case extra := <-got2:
		t.Errorf("a refused notice was sent: %v", extra.header)
	default:
	}
	assertNoSecrets(t, logs)
	assertNoSecrets(t, logs2)
}

func TestConfigCallbackSigningSecret(t *testing.T) {
	text, _ := testSecrets(t, 2)
	one := strings.Fields(text)[0]
	noSigning := writeHostJSON(t, `{"version": "2.0"}`)
	named := writeHostJSON(t, `{"version": "2.0", "jobhost": {"callbacks": {"signingSecret": "HookSecret"}}}`)

	load := func(path string, settings map[string]string) (*Config, error) {
		return LoadConfig(path, true, NewAppSettings(settings))
	}
	// No setting: unsigned.
	cfg, err := load(noSigning, nil)
	if err != nil || len(cfg.Callbacks.Secrets) != 0 || cfg.Callbacks.SigningSecret != "" {
		t.Fatalf("no setting: %v, %+v", err, cfg.Callbacks)
	}
	cfg, err = load(noSigning, map[string]string{"JOBHOST_CALLBACK_SECRET": "  "})
	if err != nil || len(cfg.Callbacks.Secrets) != 0 {
		t.Fatalf("blank setting: %v, %+v", err, cfg.Callbacks)
	}
	// The default setting, one secret or two (rotation).
	cfg, err = load(noSigning, map[string]string{"JOBHOST_CALLBACK_SECRET": one})
	if err != nil || len(cfg.Callbacks.Secrets) != 1 {
		t.Fatalf("one secret: %v, %+v", err, cfg.Callbacks)
	}
	cfg, err = load(noSigning, map[string]string{"JOBHOST_CALLBACK_SECRET": text})
	if err != nil || len(cfg.Callbacks.Secrets) != 2 {
		t.Fatalf("two secrets: %v, %+v", err, cfg.Callbacks)
	}
	for _, out := range []string{fmt.Sprintf("%v %+v %#v", cfg, *cfg, cfg.Callbacks), mustJSON(t, cfg)} {
		for _, s := range strings.Fields(text) {
			if strings.Contains(out, strings.TrimPrefix(s, "whsec_")) {
				t.Errorf("the config prints its secret: %s", out)
			}
		}
	}
	// A setting named in host.json, or by an app setting, wins.
	cfg, err = load(named, map[string]string{"HookSecret": one, "JOBHOST_CALLBACK_SECRET": "whsec_bad"})
	if err != nil || len(cfg.Callbacks.Secrets) != 1 || cfg.Callbacks.SigningSecret != "HookSecret" {
		t.Fatalf("named setting: %v, %+v", err, cfg.Callbacks)
	}
	cfg, err = load(noSigning, map[string]string{"AzureFunctionsJobHost__jobhost__callbacks__signingSecret": "Other", "Other": text})
	if err != nil || len(cfg.Callbacks.Secrets) != 2 {
		t.Fatalf("named by an app setting: %v, %+v", err, cfg.Callbacks)
	}
	// The secrets reach the sender.
	cb := newCallbacks(cfg.Callbacks, nil)
	closeNow(t, cb)
	if len(cb.secrets) != 2 {
		t.Errorf("sender has %d secrets, want 2", len(cb.secrets))
	}

	const marker = "SECRETMARK"
	bad := func(path string, settings map[string]string, key, want string) {
		t.Helper()
		_, err := load(path, settings)
		if err == nil {
			t.Errorf("%s: no error", want)
			return
		}
		ps := problems(t, err)
		if len(ps) != 1 || !strings.HasPrefix(ps[0], key+": ") || !strings.Contains(ps[0], want) {
			t.Errorf("problems = %q, want one for %s containing %q", ps, key, want)
		}
		for _, v := range settings {
			if strings.Contains(err.Error(), marker) || (strings.Contains(v, "whsec_") && strings.Contains(err.Error(), v)) {
				t.Errorf("the problem shows the secret: %v", err)
			}
		}
	}
	bad(noSigning, map[string]string{"JOBHOST_CALLBACK_SECRET": "whsec_" + marker + "!!"},
		"JOBHOST_CALLBACK_SECRET", "not valid standard base64")
	bad(noSigning, map[string]string{"JOBHOST_CALLBACK_SECRET": marker + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		"JOBHOST_CALLBACK_SECRET", `must start with "whsec_"`)
	bad(noSigning, map[string]string{"JOBHOST_CALLBACK_SECRET": one + " whsec_" + marker},
		"JOBHOST_CALLBACK_SECRET", "secret 2 of 2")
	bad(noSigning, map[string]string{"JOBHOST_CALLBACK_SECRET": "whsec_U0VDUkVUTUFSSw=="},
		"JOBHOST_CALLBACK_SECRET", "holds 10 bytes, want 24 to 64")
	bad(named, map[string]string{"HookSecret": "whsec_" + marker}, "HookSecret", "not a valid callback signing secret")
	bad(named, nil, "jobhost.callbacks.signingSecret", "names app setting HookSecret, which is not set")
	bad(noSigning, map[string]string{"AzureFunctionsJobHost__jobhost__callbacks__signingSecret": "Missing"},
		"AzureFunctionsJobHost__jobhost__callbacks__signingSecret", "names app setting Missing")
	bad(writeHostJSON(t, `{"version": "2.0", "jobhost": {"callbacks": {"signingSecret": "whsec_`+marker+`"}}}`), nil,
		"jobhost.callbacks.signingSecret", "not hold the secret")
	bad(writeHostJSON(t, `{"version": "2.0", "jobhost": {"callbacks": {"signingSecret": "a `+marker+`"}}}`), nil,
		"jobhost.callbacks.signingSecret", "must be the name of an app setting")
	bad(writeHostJSON(t, `{"version": "2.0", "jobhost": {"callbacks": {"signingSecret": 3}}}`), nil,
		"jobhost.callbacks.signingSecret", "must be the name of an app setting, got 3")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
