package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/operations"
)

// Request parts the API reads.
const (
	// IdempotencyKeyHeader makes a repeated submission answer as the first
	// did instead of queueing a second operation.
	IdempotencyKeyHeader = "Idempotency-Key"
	// ReplayedHeader is "true" on the answer to a repeated submission.
	ReplayedHeader = "Idempotent-Replayed"
	// CallbackParam is the query parameter naming a callback URL (the
	// other way is Prefer: callback; url="…").
	CallbackParam = "callbackUrl"
	// maxIdempotencyKey bounds an Idempotency-Key.
	maxIdempotencyKey = 255
	// maxID bounds an id worth looking up.
	maxID = 256
)

// submit serves POST {prefix}/{function}.
func (a *api) submit(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	function := r.PathValue("function")
	if !jsonMediaType(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type", "the body must be JSON: Content-Type application/json (or a */*+json type), charset utf-8 if any")
		return
	}
	input, ok := a.readBody(w, r)
	if !ok {
		return
	}
	key, err := idempotencyKey(r.Header.Values(IdempotencyKeyHeader))
	if err != nil {
		writeError(w, http.StatusBadRequest, IdempotencyKeyHeader, err.Error())
		return
	}
	prefs := readPreferences(r.Header.Values("Prefer"))
	callback, err := a.callbackURL(r, prefs)
	if err != nil {
		writeError(w, http.StatusBadRequest, CallbackParam, err.Error())
		return
	}
	rec, created, err := a.ops.Submit(r.Context(), client.Submission{
		Function:       function,
		Input:          input,
		RunAs:          p.runAs(),
		CallbackURL:    callback,
		IdempotencyKey: key,
	})
	if err != nil {
		a.submitError(w, r, function, err)
		return
	}
	var done applied
	if prefs.HasCallback && callback != "" {
		done.add("callback", "")
	}
	if !created {
		w.Header().Set(ReplayedHeader, "true")
	}
	statusURL := a.statusURL(r, rec.ID)
	waited := prefs.HasWait && prefs.Wait > 0
	if waited {
		wait := min(time.Duration(prefs.Wait)*time.Second, a.maxWait)
		done.addSeconds("wait", int((wait+time.Second-1)/time.Second))
		if !rec.Status.Final() {
			rec = a.wait(r.Context(), rec, wait)
		}
	}
	if waited && rec.Status.Final() {
		// Done within the wait asked for: answer as a synchronous call would.
		setApplied(w, done)
		w.Header().Set("Content-Location", statusURL)
		writeJSON(w, http.StatusOK, full(rec, statusURL, true))
		return
	}
	if prefs.RespondAsync {
		done.add("respond-async", "")
	}
	setApplied(w, done)
	w.Header().Set("Location", statusURL)
	a.setRetryAfter(w)
	writeJSON(w, http.StatusAccepted, summary(rec, statusURL))
}

// wait waits up to d for rec to complete, and returns it as it is then.
func (a *api) wait(ctx context.Context, rec *operations.Record, d time.Duration) *operations.Record {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	got, err := a.ops.Wait(ctx, rec.ID)
	if err != nil && ctx.Err() == nil {
		a.log.Warn("operations API: waiting for an operation failed",
			zap.String("id", rec.ID), zap.String("error", redact.All(err.Error())))
	}
	if got == nil {
		return rec
	}
	return got
}

// readBody reads a submission's body, at most maxBody bytes (413 beyond),
// and checks it is JSON (400).
func (a *api) readBody(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	tooLarge := func() (json.RawMessage, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("the body is larger than the %d bytes allowed", a.maxBody))
		return nil, false
	}
	if r.ContentLength > a.maxBody {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return tooLarge()
		}
		writeError(w, http.StatusBadRequest, "", "the body could not be read")
		return nil, false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		writeError(w, http.StatusBadRequest, "", "the body is empty: send the function's input as JSON (null for none)")
		return nil, false
	}
	if !json.Valid(body) {
		writeError(w, http.StatusBadRequest, "", "the body is not valid JSON")
		return nil, false
	}
	return body, true
}

// submitError answers a failed Submit.
func (a *api) submitError(w http.ResponseWriter, r *http.Request, function string, err error) {
	if inErr, ok := errors.AsType[*client.InputError](err); ok {
		writeError(w, http.StatusBadRequest, inErr.Field, inErr.Error())
		return
	}
	if big, ok := errors.AsType[*client.TooLargeError](err); ok {
		writeError(w, http.StatusRequestEntityTooLarge, "",
			fmt.Sprintf("the input is %d bytes once encoded; at most %d are allowed", big.Size, big.Limit))
		return
	}
	switch {
	case errors.Is(err, client.ErrUnknownFunction):
		writeError(w, http.StatusNotFound, "function", "no function named "+strconv.Quote(function)+" takes submissions")
		return
	case errors.Is(err, client.ErrIdempotencyConflict):
		writeError(w, http.StatusConflict, IdempotencyKeyHeader, "the Idempotency-Key was used before with a different input")
		return
	case r.Context().Err() != nil:
		return // the caller went away: nobody reads an answer
	}
	a.log.Warn("operations API: submitting failed", zap.String("function", function),
		zap.String("error", redact.All(err.Error())))
	a.unavailable(w, err, "the operation could not be submitted; try again later")
}

// unavailable answers 503 for a failure of the store or the broker; the
// detail is logged, not shown.
func (a *api) unavailable(w http.ResponseWriter, err error, message string) {
	if errors.Is(err, client.ErrNoStore) {
		writeError(w, http.StatusServiceUnavailable, "", "background operations are not set up on this host (it has no operations store)")
		return
	}
	a.setRetryAfter(w)
	writeError(w, http.StatusServiceUnavailable, "", message)
}

// get serves GET {prefix}/{id}: 200 with the record whatever its state,
// Retry-After while it has not completed.
func (a *api) get(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.lookup(w, r)
	if !ok {
		return
	}
	if !rec.Status.Final() {
		a.setRetryAfter(w)
	}
	writeJSON(w, http.StatusOK, full(rec, a.statusURL(r, rec.ID), true))
}

// lookup reads the record named by the path, answering 404 when it is
// unknown, expired or another caller's.
func (a *api) lookup(w http.ResponseWriter, r *http.Request) (*operations.Record, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxID {
		notFoundOperation(w)
		return nil, false
	}
	rec, err := a.ops.Get(r.Context(), id)
	if err == nil && !principalFrom(r.Context()).owns(rec.RunAs) {
		err = operations.ErrNotFound
	}
	if err != nil {
		a.readError(w, r, id, err)
		return nil, false
	}
	return rec, true
}

func notFoundOperation(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "id", "no such operation (it may have expired)")
}

// readError answers a failed Get, Cancel or List.
func (a *api) readError(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, operations.ErrNotFound):
		notFoundOperation(w)
		return
	case errors.Is(err, operations.ErrInvalidCursor):
		writeError(w, http.StatusBadRequest, "cursor", "not a cursor a previous page returned (pass its next as it was)")
		return
	case r.Context().Err() != nil:
		return
	}
	a.log.Warn("operations API: reading operations failed", zap.String("id", id),
		zap.String("error", redact.All(err.Error())))
	a.unavailable(w, err, "the operations store could not be reached; try again later")
}

// cancel serves DELETE {prefix}/{id}: 202 while the operation is
// Canceling (its function runs until the host stops it), 200 once it is
// Canceled, 409 when it already succeeded or failed.
func (a *api) cancel(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.lookup(w, r)
	if !ok {
		return
	}
	rec, err := a.ops.Cancel(r.Context(), rec.ID)
	if errors.Is(err, operations.ErrCompleted) {
		msg := "the operation already completed"
		if got, gerr := a.ops.Get(r.Context(), r.PathValue("id")); gerr == nil {
			msg += ": " + got.Status.String()
		}
		writeError(w, http.StatusConflict, "", msg)
		return
	}
	if err != nil {
		a.readError(w, r, r.PathValue("id"), err)
		return
	}
	statusURL := a.statusURL(r, rec.ID)
	status := http.StatusOK
	if !rec.Status.Final() {
		status = http.StatusAccepted
		w.Header().Set("Location", statusURL)
		a.setRetryAfter(w)
	}
	writeJSON(w, status, full(rec, statusURL, true))
}

// pageJSON is a listing's answer.
type pageJSON struct {
	Records []recordJSON `json:"records"`
	// Next is the cursor of the next page, "" on the last.
	Next string `json:"next"`
	// NextLink is the next page's absolute URL (without the key).
	NextLink string `json:"nextLink,omitempty"`
}

// list serves GET {prefix}?….
func (a *api) list(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	q, err := parseListQuery(r.URL.RawQuery)
	if err != nil {
		field := "query"
		if pe, ok := errors.AsType[*paramError](err); ok {
			field = pe.Param
		}
		writeError(w, http.StatusBadRequest, field, err.Error())
		return
	}
	out := pageJSON{Records: []recordJSON{}}
	sq, some := q.storeQuery(p)
	if !some {
		writeJSON(w, http.StatusOK, out)
		return
	}
	page, err := a.ops.List(r.Context(), sq)
	if err != nil {
		a.readError(w, r, "", err)
		return
	}
	for _, rec := range page.Records {
		if p.owns(rec.RunAs) { // the store filtered already: belt and braces
			out.Records = append(out.Records, full(rec, a.statusURL(r, rec.ID), false))
		}
	}
	if page.Next != "" {
		out.Next = page.Next
		next := q
		next.Cursor = page.Next
		out.NextLink = a.listURL(r, next.encode())
	}
	writeJSON(w, http.StatusOK, out)
}

// setRetryAfter advises the polling interval.
func (a *api) setRetryAfter(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(int(max((a.retryAfter+time.Second-1)/time.Second, 1))))
}

func setApplied(w http.ResponseWriter, done applied) {
	if len(done) > 0 {
		w.Header().Set("Preference-Applied", done.String())
	}
}

// jsonMediaType reports whether a Content-Type is JSON: application/json
// or a structured */*+json type, with no charset but UTF-8's.
func jsonMediaType(v string) bool {
	if v == "" {
		return false
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || typ == "" || !(mt == "application/json" || strings.HasSuffix(sub, "+json") && len(sub) > len("+json")) {
		return false
	}
	cs, has := params["charset"]
	return !has || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
}

// idempotencyKey reads the Idempotency-Key header: at most one, 1 to 255
// visible ASCII characters; the draft standard's quoted form ("…") is
// read too.
func idempotencyKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errors.New("give one Idempotency-Key")
	}
	k := strings.TrimSpace(values[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if k == "" || len(k) > maxIdempotencyKey {
		return "", fmt.Errorf("an Idempotency-Key is 1 to %d characters", maxIdempotencyKey)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return "", errors.New("an Idempotency-Key holds only visible ASCII characters")
		}
	}
	return k, nil
}

// callbackURL returns the callback the request asks for, from
// callbackUrl= or Prefer: callback; url="…" (both must agree), checked:
// an absolute http or https URL that CheckCallback accepts.
func (a *api) callbackURL(r *http.Request, prefs preferences) (string, error) {
	values := r.URL.Query()[CallbackParam]
	if len(values) > 1 {
		return "", errors.New("give one callbackUrl")
	}
	var cb string
	if len(values) == 1 {
		cb = values[0]
	}
	if prefs.HasCallback {
		if cb != "" && cb != prefs.Callback {
			return "", errors.New("the callbackUrl parameter and the Prefer callback name different URLs")
		}
		cb = prefs.Callback
	}
	if cb == "" {
		return "", nil
	}
	u, err := url.Parse(cb)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("the callback must be an absolute http or https URL")
	}
	if a.checkCallback != nil {
		if err := a.checkCallback(cb); err != nil {
			return "", fmt.Errorf("the callback URL is not allowed: %v", err)
		}
	}
	return cb, nil
}
