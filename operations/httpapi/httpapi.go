// Package httpapi serves background operations over HTTP, in the shapes
// Dataverse's background operations and Durable Functions' HTTP API give
// callers: submit with POST and get 202 Accepted and a Location to poll,
// GET the record, list with filters and a cursor, cancel with DELETE.
// It is an http.Handler a web app mounts in its own server, and the one
// `jobhost run` serves on the host's HTTP listener; it only calls a
// client.Operations.
//
// Routes, under Options.Prefix (default /api/operations):
//
//	POST   {prefix}/{function}  submit: 202 (200 with Prefer: wait=N when done in time)
//	GET    {prefix}/{id}        the record: 200, even while it runs
//	DELETE {prefix}/{id}        cancel: 202 Canceling, 200 Canceled, 409 completed
//	GET    {prefix}?function=&status=&state=&since=&runAs=&limit=&cursor=
//	                            a page of records, with nextLink
//
// Unlike Durable Functions, a GET on an operation answers 200 whatever its
// state, with Retry-After while it has not completed: Durable's 202 on a
// status GET is a known complaint (azure-functions-durable-extension#1183),
// as it breaks HTTP's meaning of GET on a resource.
//
// Requests carry a key as Azure Functions has them: the x-functions-key
// header or the code query parameter (see Keys). Every error is JSON:
//
//	{"error":{"code":"NotFound","message":"…","field":"…"}}
//
// Mount the handler without stripping the prefix (http.StripPrefix): the
// URLs it answers with are built from Prefix.
package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/client"
)

// Defaults of Options.
const (
	DefaultPrefix     = "/api/operations"
	DefaultRetryAfter = 5 * time.Second
	DefaultMaxWait    = 60 * time.Second
	DefaultMaxBody    = 1 << 20
)

// Options configure the handler. Only Operations is required.
type Options struct {
	// Operations is what the API serves.
	Operations client.Operations
	// Keys are the keys requests may carry; with none, only loopback
	// requests are served (see Keys.Empty).
	Keys Keys
	// Prefix is the path the routes live under (DefaultPrefix when "").
	// It starts with '/', and has no trailing '/' and no wildcard.
	Prefix string
	// RetryAfter is the polling interval the answers advise with
	// Retry-After, rounded up to seconds (DefaultRetryAfter when 0).
	RetryAfter time.Duration
	// MaxWait caps the wait a submission asks for with Prefer: wait=N
	// (DefaultMaxWait when 0).
	MaxWait time.Duration
	// MaxBody caps a submission's body in bytes: 413 beyond
	// (DefaultMaxBody when 0).
	MaxBody int64
	// CheckCallback, when set, vets a callback URL (the host's
	// allowlist): an error answers 400 naming callbackUrl. Without it any
	// absolute http or https URL is taken.
	CheckCallback func(url string) error
	// TrustForwarded builds the URLs in answers from X-Forwarded-Proto and
	// X-Forwarded-Host: set it only behind a proxy that sets them.
	TrustForwarded bool
	// Logger logs failures and, at debug level, every request (method,
	// path, status; never a key or the query string). nil logs nothing.
	Logger *zap.Logger
}

// api is the handler's state.
type api struct {
	ops            client.Operations
	keys           *keyring
	prefix         string
	retryAfter     time.Duration
	maxWait        time.Duration
	maxBody        int64
	checkCallback  func(string) error
	trustForwarded bool
	log            *zap.Logger
	mux            *http.ServeMux
}

// New returns the API's handler. It fails on options that cannot work: no
// Operations, a bad Prefix, negative limits, a blank key or one given to
// two owners.
func New(o Options) (http.Handler, error) {
	if o.Operations == nil {
		return nil, errors.New("httpapi: Options.Operations is nil")
	}
	prefix, err := checkPrefix(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.RetryAfter < 0 || o.MaxWait < 0 || o.MaxBody < 0 {
		return nil, errors.New("httpapi: RetryAfter, MaxWait and MaxBody cannot be negative")
	}
	keys, err := newKeyring(o.Keys)
	if err != nil {
		return nil, err
	}
	a := &api{
		ops:            o.Operations,
		keys:           keys,
		prefix:         prefix,
		retryAfter:     cmpOr(o.RetryAfter, DefaultRetryAfter),
		maxWait:        cmpOr(o.MaxWait, DefaultMaxWait),
		maxBody:        cmpOr(o.MaxBody, DefaultMaxBody),
		checkCallback:  o.CheckCallback,
		trustForwarded: o.TrustForwarded,
		log:            o.Logger,
		mux:            http.NewServeMux(),
	}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	a.routes()
	return a, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// checkPrefix cleans and checks Options.Prefix.
func checkPrefix(p string) (string, error) {
	if p == "" {
		return DefaultPrefix, nil
	}
	p = strings.TrimRight(p, "/")
	switch {
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("httpapi: Prefix %q does not start with '/'", p)
	case p == "":
		return "", errors.New("httpapi: Prefix cannot be the root; use a path such as " + DefaultPrefix)
	case strings.ContainsAny(p, "{}?#% \t\r\n"):
		return "", fmt.Errorf("httpapi: Prefix %q holds a character a path pattern cannot (braces, '?', '#', '%%', white space)", p)
	case path.Clean(p) != p:
		return "", fmt.Errorf("httpapi: Prefix %q is not a clean path (it would be %q)", p, path.Clean(p))
	}
	return p, nil
}

// routes registers the patterns. A method-less pattern for each path
// answers other methods with 405 and Allow; the subtree pattern answers
// unknown paths with 404, both in JSON (ServeMux's own are plain text).
func (a *api) routes() {
	p := a.prefix
	a.mux.HandleFunc("POST "+p+"/{function}", a.submit)
	a.mux.HandleFunc("GET "+p+"/{id}", a.get)
	a.mux.HandleFunc("DELETE "+p+"/{id}", a.cancel)
	a.mux.HandleFunc(p+"/{id}", notAllowed("GET, HEAD, POST, DELETE"))
	a.mux.HandleFunc("GET "+p, a.list)
	a.mux.HandleFunc(p, notAllowed("GET, HEAD"))
	a.mux.HandleFunc("GET "+p+"/{$}", a.list)
	a.mux.HandleFunc(p+"/{$}", notAllowed("GET, HEAD"))
	a.mux.HandleFunc("/", a.notFound)
}

func notAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "", "the method "+strconv.Quote(r.Method)+" is not allowed here; allowed: "+allow)
	}
}

func (a *api) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "", "no such route: the API serves "+a.prefix+"/{function} (POST), "+a.prefix+"/{id} (GET, DELETE) and "+a.prefix+" (GET)")
}

// ServeHTTP recovers from panics (500 in JSON, logged), authenticates,
// then routes.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("operations API: a handler panicked",
				zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			if !rw.wrote {
				writeError(rw, http.StatusInternalServerError, "", "internal error")
			}
		}
		a.log.Debug("operations API request",
			zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", rw.status), zap.Duration("took", time.Since(start)))
	}()
	p, ok := a.authenticate(rw, r)
	if !ok {
		return
	}
	a.mux.ServeHTTP(rw, r.WithContext(withPrincipal(r.Context(), p)))
}

// recorder notes whether and with what status an answer was written.
type recorder struct {
	http.ResponseWriter
	wrote  bool
	status int
}

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.wrote, r.status = true, status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.wrote, r.status = true, http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
