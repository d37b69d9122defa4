package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Completion is the JSON body of a completion callback.
type Completion struct {
	InvocationID string    `json:"invocationId"`
	Function     string    `json:"function"`
	MessageID    string    `json:"messageId"`
	Status       string    `json:"status"` // "succeeded" or "poisoned"
	Error        string    `json:"error,omitempty"`
	Output       any       `json:"output,omitempty"`
	StartTime    time.Time `json:"startTime"`
	EndTime      time.Time `json:"endTime"`
	Attempts     int64     `json:"attempts"`
}

const (
	// maxCallbacksInFlight bounds the completion notices being sent (or
	// waiting to be retried) at once; Post drops any beyond it.
	maxCallbacksInFlight = 64
	// callbackBodyLimit is how much of a response body is read (and
	// discarded) so the connection can be reused.
	callbackBodyLimit = 64 << 10
	// callbackMaxBackoff caps the wait between two attempts.
	callbackMaxBackoff = time.Minute
	// callbackAbandonGrace is how long Close waits, once its context has
	// ended and the posts under way are cancelled, for them to log and exit.
	callbackAbandonGrace       = time.Second
	defaultCallbackTimeout     = 10 * time.Second
	defaultCallbackMaxAttempts = 3
)

// callbacks sends completion notices (jobhost.callbacks): an HTTP POST of a
// Completion to a URL whose host is in the allowlist, in the background,
// retried on network errors, 408, 429 and 5xx. A callback never affects the
// message it reports on: the caller has settled it before calling Post.
// The dialer refuses link-local and cloud metadata addresses (see
// callbacks_dial.go).
//
// Delivery is best effort: up to maxAttempts POSTs, none guaranteed to land.
// The notice lives only in memory and is posted once the message is settled,
// so nothing sends it again: it is lost if the process exits before it
// lands (Close abandons retries in backoff and gives POSTs under way its
// context's time), if 64 are in flight, on a refusal, a 3xx or other 4xx
// than 408 and 429, or the last failed attempt. It may arrive twice: an
// attempt that times out or gets a 5xx after the receiver took it is
// retried, and a message delivered again (its deletion failed or its lease
// was lost) runs again and sends a new notice, with a new invocation ID.
// Receivers deduplicate on invocationId (X-Jobhost-Invocation-Id) and
// messageId.
type callbacks struct {
	log         *zap.Logger
	client      *http.Client
	allowed     []hostPattern
	literalIPs  map[netip.Addr]bool // IP addresses the allowlist names
	timeout     time.Duration       // one attempt
	maxAttempts int
	backoff     time.Duration // wait after the first failed attempt; doubles after each
	dropped     atomic.Int64  // notices Post dropped: over the bound or after Close

	// resolve and dial are the dialer's name lookup and connect (tests
	// replace them); dial is given only vetted IP addresses.
	resolve func(ctx context.Context, network, host string) ([]netip.Addr, error)
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)

	sem    chan struct{} // one token per post in flight
	wg     sync.WaitGroup
	mu     sync.Mutex // guards closed against wg.Add racing Close's wg.Wait
	closed bool
	stop   chan struct{}      // closed by Close: no more retries
	ctx    context.Context    // cancelled when Close gives up: aborts requests
	cancel context.CancelFunc //
}

// newCallbacks returns the sender for settings s; log receives refusals,
// failures (warn) and successes (debug). Invalid allowedHosts entries are
// logged and ignored.
func newCallbacks(s CallbackSettings, log *zap.Logger) *callbacks {
	if log == nil {
		log = zap.NewNop()
	}
	cb := &callbacks{
		log:         log,
		timeout:     s.Timeout,
		maxAttempts: s.MaxAttempts,
		backoff:     time.Second,
		literalIPs:  map[netip.Addr]bool{},
		sem:         make(chan struct{}, maxCallbacksInFlight),
		stop:        make(chan struct{}),
		resolve:     net.DefaultResolver.LookupNetIP,
		dial:        (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	if cb.timeout <= 0 {
		cb.timeout = defaultCallbackTimeout
	}
	if cb.maxAttempts <= 0 {
		cb.maxAttempts = defaultCallbackMaxAttempts
	}
	for _, e := range s.AllowedHosts {
		p, err := parseHostPattern(e)
		if err != nil {
			log.Warn("jobhost.callbacks.allowedHosts entry ignored", zap.String("entry", e), zap.String("reason", err.Error()))
			continue
		}
		cb.allowed = append(cb.allowed, p)
		if a, err := netip.ParseAddr(p.host); err == nil {
			cb.literalIPs[a] = true
		}
	}
	cb.ctx, cb.cancel = context.WithCancel(context.Background())
	// http.DefaultTransport's settings, without its proxy: the dialer must
	// see the address it connects to.
	transport := &http.Transport{DialContext: cb.dialContext, ForceAttemptHTTP2: true, MaxIdleConns: 100,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second}
	cb.client = &http.Client{
		Transport: transport,
		// Never follow a redirect: the allowlist applies to the URL given,
		// and a redirect could lead anywhere. The 3xx is a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return cb
}

// Post sends c to rawURL in the background and returns at once; it never
// blocks the caller and never panics. A URL refused by the rules is logged
// (warn) and nothing is sent. At most 64 notices are in flight (sending or
// waiting to retry) at once: beyond that, and after Close, Post logs a
// warning and drops the notice, counting it in cb.dropped.
func (cb *callbacks) Post(rawURL string, c Completion) {
	fields := []zap.Field{
		zap.String("function", c.Function),
		zap.String("invocationId", c.InvocationID),
		zap.String("messageId", c.MessageID),
		zap.String("outcome", c.Status),
		zap.String("url", safeURL(rawURL)),
	}
	defer func() {
		if r := recover(); r != nil {
			cb.log.Error("callback not sent: internal error", append(fields, zap.String("panic", fmt.Sprint(r)))...)
		}
	}()
	u, err := cb.check(rawURL)
	if err != nil {
		cb.log.Warn("callback refused", append(fields, zap.String("reason", err.Error()))...)
		return
	}
	body, err := json.Marshal(c)
	if err != nil {
		cb.log.Warn("callback not sent: the completion cannot be encoded as JSON", append(fields, zap.String("error", err.Error()))...)
		return
	}
	cb.mu.Lock()
	if cb.closed {
		cb.mu.Unlock()
		cb.log.Warn("callback dropped: the host is stopping", append(fields, zap.Int64("dropped", cb.dropped.Add(1)))...)
		return
	}
	select {
	case cb.sem <- struct{}{}:
	default:
		cb.mu.Unlock()
		cb.log.Warn("callback dropped: too many callbacks in flight",
			append(fields, zap.Int("limit", cap(cb.sem)), zap.Int64("dropped", cb.dropped.Add(1)))...)
		return
	}
	cb.wg.Add(1)
	cb.mu.Unlock()
	go cb.send(u, body, c.InvocationID, fields)
}

// attemptResult is the outcome of one POST: a status code, or an error.
type attemptResult struct {
	status int
	err    error
}

func (r attemptResult) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

func (r attemptResult) retryable() bool {
	if r.err != nil {
		return !isAddressRefused(r.err)
	}
	return r.status == http.StatusRequestTimeout || r.status == http.StatusTooManyRequests || r.status >= 500
}

func (r attemptResult) fields() []zap.Field {
	var fs []zap.Field
	if r.status != 0 {
		fs = append(fs, zap.Int("statusCode", r.status))
		if r.status >= 300 && r.status < 400 {
			fs = append(fs, zap.String("error", "redirect not followed"))
		}
	}
	if r.err != nil {
		fs = append(fs, zap.String("error", r.err.Error()))
	}
	return fs
}

// send runs in its own goroutine: attempts with backoff until success, a
// final failure, or Close.
func (cb *callbacks) send(u *url.URL, body []byte, invocationID string, fields []zap.Field) {
	defer func() {
		<-cb.sem
		cb.wg.Done()
	}()
	defer func() {
		if r := recover(); r != nil {
			cb.log.Error("callback failed: internal error", append(fields, zap.String("panic", fmt.Sprint(r)))...)
		}
	}()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		r := cb.attempt(u, body, invocationID)
		if r.ok() {
			cb.log.Debug("callback sent", append(fields, zap.Int("statusCode", r.status),
				zap.Int("attempts", attempt), zap.Int64("durationMs", time.Since(start).Milliseconds()))...)
			return
		}
		if cb.ctx.Err() != nil {
			cb.log.Warn("callback abandoned: the host stopped", append(fields, zap.Int("attempts", attempt))...)
			return
		}
		if isAddressRefused(r.err) {
			cb.log.Warn("callback refused", append(fields, zap.String("reason", r.err.Error()), zap.Int("attempts", attempt))...)
			return
		}
		if !r.retryable() || attempt >= cb.maxAttempts {
			cb.log.Warn("callback failed", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		}
		delay := cb.backoff << (attempt - 1)
		if delay > callbackMaxBackoff || delay <= 0 {
			delay = callbackMaxBackoff
		}
		select {
		case <-cb.stop:
			cb.log.Warn("callback abandoned: the host is stopping", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		default:
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-cb.stop:
			t.Stop()
			cb.log.Warn("callback abandoned: the host is stopping", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		}
	}
}

// attempt makes one POST bounded by cb.timeout, drains and closes the body.
func (cb *callbacks) attempt(u *url.URL, body []byte, invocationID string) attemptResult {
	ctx, cancel := context.WithTimeout(cb.ctx, cb.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return attemptResult{err: errors.New("cannot build the request")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jobhost")
	req.Header.Set("X-Jobhost-Invocation-Id", invocationID)
	resp, err := cb.client.Do(req)
	if err != nil {
		return attemptResult{err: cb.describe(ctx, err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, callbackBodyLimit))
	return attemptResult{status: resp.StatusCode}
}

// describe returns err without the request URL (*url.Error quotes it whole,
// query included).
func (cb *callbacks) describe(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && cb.ctx.Err() == nil {
		return fmt.Errorf("timed out after %s", cb.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Close stops retries waiting in backoff (each logged as abandoned) and
// waits for the POSTs under way until ctx ends; then it cancels them (logged)
// and returns. Post drops notices after Close.
func (cb *callbacks) Close(ctx context.Context) {
	cb.mu.Lock()
	if !cb.closed {
		cb.closed = true
		close(cb.stop)
	}
	cb.mu.Unlock()
	done := make(chan struct{})
	go func() {
		cb.wg.Wait()
		close(done)
	}()
	defer cb.cancel()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	cb.log.Warn("callbacks abandoned: shutdown time is up", zap.Int("inFlight", len(cb.sem)))
	cb.cancel()
	// Cancelled requests return at once; let them log before returning.
	t := time.NewTimer(callbackAbandonGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
