// Package dashboard is jobhost's web dashboard: an http.Handler that shows
// what a running host does (its functions' listeners, recent invocations,
// poison messages, background operations) and lets an operator requeue or
// purge poison messages and cancel operations.
//
// Pages are rendered on the server with html/template from files embedded
// in the binary; a small script of its own (no build step, no CDN)
// refreshes marked parts of a page every few seconds. Every page works
// without the script, state-changing actions included: each is a POST
// confirmed on a page of its own.
//
// It is safe by default: without authentication configured it answers
// loopback clients only, and only for a loopback Host header (so that DNS
// rebinding cannot reach it); with keys or basic auth configured every page
// needs them. State-changing requests need a CSRF token bound to the
// session and pass an Origin / Sec-Fetch-Site check; ReadOnly refuses them
// all. See docs/dashboard.md.
package dashboard

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/httpapi"
	"github.com/jobhost/jobhost/status"
)

// Defaults of Options.
const (
	// DefaultRefreshInterval is how often the pages' script refreshes
	// their live parts.
	DefaultRefreshInterval = 5 * time.Second
	// DefaultCountInterval is how long a cached count (poison messages,
	// operations by status) is served before it is counted again in the
	// background.
	DefaultCountInterval = 30 * time.Second
	// DefaultSessionTTL is how long a login lasts.
	DefaultSessionTTL = 12 * time.Hour
	// DefaultPageSize is how many rows a page shows unless asked for
	// another number (limit=).
	DefaultPageSize = 50
	// MaxPageSize is the most rows a page shows.
	MaxPageSize = 500
)

// Options configure the dashboard. Only Source is required.
type Options struct {
	// Source is the host the dashboard shows.
	Source status.Source
	// Operations serves the operations pages; nil leaves them out.
	Operations client.Operations
	// Counter counts operations by status for the operations page; nil
	// means operations.CounterOf(Operations), and with none the page
	// shows no counts (it never scans the store to count).
	Counter operations.Counter
	// Keys are keys compatible with the operations API's
	// (httpapi.KeysFromSettings, JOBHOST_ADMIN_KEY): an admin key opens
	// the dashboard, in the x-functions-key header, the code query
	// parameter or the login form. Caller keys are refused (403): the
	// dashboard shows every caller's work.
	Keys httpapi.Keys
	// BasicAuth, when set, also admits HTTP basic authentication (and the
	// login form) with this user and password.
	BasicAuth *BasicAuth
	// ReadOnly hides every state-changing action and refuses it (403).
	ReadOnly bool
	// AllowRemote serves clients that are not on the loopback interface,
	// with any Host header. It needs Keys or BasicAuth: New fails
	// without. When false, only loopback clients naming a loopback host
	// (localhost, 127.0.0.1, [::1]) are served, whatever the
	// authentication.
	AllowRemote bool
	// Prefix is the path the dashboard is mounted under ("" or "/" for
	// the root); mount it without stripping the prefix.
	Prefix string
	// Logger logs failures and refused requests (never a key or a query
	// string). nil logs nothing.
	Logger *zap.Logger
	// Now is the clock (time.Now when nil); tests set it.
	Now func() time.Time
	// RefreshInterval is how often live parts refresh
	// (DefaultRefreshInterval when 0).
	RefreshInterval time.Duration
	// CountInterval is how long cached counts are served
	// (DefaultCountInterval when 0).
	CountInterval time.Duration
	// SessionTTL is how long a login lasts (DefaultSessionTTL when 0).
	// Sessions are signed with a key made when New is called: they end
	// when the process does.
	SessionTTL time.Duration
	// PageSize is the default number of rows of a page (DefaultPageSize
	// when 0, at most MaxPageSize).
	PageSize int
}

// BasicAuth is a user and password that open the dashboard.
type BasicAuth struct {
	// User and Password must both be set.
	User, Password string
}

// dash is the handler.
type dash struct {
	src       status.Source
	ops       client.Operations
	counter   operations.Counter
	auth      *authenticator
	readOnly  bool
	remote    bool
	prefix    string // "" or "/x" (no trailing slash)
	log       *zap.Logger
	now       func() time.Time
	refresh   time.Duration
	pageSize  int
	cache     *countCache
	rates     *sampler
	pages     *pageSet
	mux       *http.ServeMux
	crossSite *http.CrossOriginProtection
}

// New returns the dashboard's handler. It fails on options that cannot
// work: no Source, a bad Prefix, negative durations, a blank key, a half
// set BasicAuth, or AllowRemote without authentication.
func New(o Options) (http.Handler, error) {
	if o.Source == nil {
		return nil, errors.New("dashboard: Options.Source is nil")
	}
	prefix, err := cleanPrefix(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.RefreshInterval < 0 || o.CountInterval < 0 || o.SessionTTL < 0 || o.PageSize < 0 {
		return nil, errors.New("dashboard: RefreshInterval, CountInterval, SessionTTL and PageSize cannot be negative")
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("dashboard: session key: %w", err)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	auth, err := newAuthenticator(o.Keys, o.BasicAuth, secret, or(o.SessionTTL, DefaultSessionTTL), now)
	if err != nil {
		return nil, err
	}
	if o.AllowRemote && auth.open() {
		return nil, errors.New("dashboard: AllowRemote needs Keys (JOBHOST_ADMIN_KEY) or BasicAuth: an open dashboard is served to loopback clients only")
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	d := &dash{
		src:       o.Source,
		ops:       o.Operations,
		counter:   o.Counter,
		auth:      auth,
		readOnly:  o.ReadOnly,
		remote:    o.AllowRemote,
		prefix:    prefix,
		log:       o.Logger,
		now:       now,
		refresh:   or(o.RefreshInterval, DefaultRefreshInterval),
		pageSize:  min(or(o.PageSize, DefaultPageSize), MaxPageSize),
		pages:     pages,
		mux:       http.NewServeMux(),
		crossSite: http.NewCrossOriginProtection(),
	}
	if d.log == nil {
		d.log = zap.NewNop()
	}
	if d.counter == nil && d.ops != nil {
		d.counter, _ = operations.CounterOf(d.ops)
	}
	d.cache = newCountCache(or(o.CountInterval, DefaultCountInterval), now, d.log)
	d.rates = newSampler(now)
	d.routes()
	return d, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// cleanPrefix checks Options.Prefix and returns it without a trailing
// slash ("" for the root).
func cleanPrefix(p string) (string, error) {
	p = strings.TrimRight(p, "/")
	switch {
	case p == "":
		return "", nil
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("dashboard: Prefix %q does not start with '/'", p)
	case strings.ContainsAny(p, "{}?#% \t\r\n\"'<>\\"):
		return "", fmt.Errorf("dashboard: Prefix %q holds a character a path pattern cannot", p)
	case path.Clean(p) != p:
		return "", fmt.Errorf("dashboard: Prefix %q is not a clean path (it would be %q)", p, path.Clean(p))
	}
	return p, nil
}

// routes registers the pages. Actions are POST only; a GET on an action
// answers 405.
func (d *dash) routes() {
	p := d.prefix
	d.mux.HandleFunc("GET "+p+"/{$}", d.overview)
	d.mux.HandleFunc("GET "+p+"/invocations", d.invocations)
	d.mux.HandleFunc("GET "+p+"/poison/{function}", d.poison)
	d.mux.HandleFunc("GET "+p+"/poison/{function}/confirm", d.poisonConfirm)
	d.mux.HandleFunc("POST "+p+"/poison/{function}/requeue", d.poisonRequeue)
	d.mux.HandleFunc("POST "+p+"/poison/{function}/purge", d.poisonPurge)
	d.mux.HandleFunc("GET "+p+"/operations", d.operationsList)
	d.mux.HandleFunc("GET "+p+"/operations/{id}", d.operationDetail)
	d.mux.HandleFunc("GET "+p+"/operations/{id}/confirm", d.operationConfirm)
	d.mux.HandleFunc("POST "+p+"/operations/{id}/cancel", d.operationCancel)
	d.mux.HandleFunc("POST "+p+"/logout", d.logout)
	for _, action := range []string{"/poison/{function}/requeue", "/poison/{function}/purge", "/operations/{id}/cancel", "/logout"} {
		d.mux.HandleFunc(p+action, d.methodNotAllowed("POST"))
	}
	d.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, http.StatusNotFound, "", "no such page")
	})
}

func (d *dash) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		d.fail(w, r, http.StatusMethodNotAllowed, "", "the method "+r.Method+" is not allowed here; use "+allow+" (from the page's button)")
	}
}

// ServeHTTP recovers from panics (500, logged), sets the security headers,
// applies the network rule, authenticates, checks state-changing requests
// (read-only, cross-origin, CSRF token) and routes.
func (d *dash) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			d.log.Error("dashboard: a handler panicked", zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			if !rw.wrote {
				d.fail(rw, r, http.StatusInternalServerError, "", "internal error (logged)")
			}
		}
	}()
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

	if r.Body != nil {
		r.Body = http.MaxBytesReader(rw, r.Body, maxForm)
	}
	if !d.remote {
		if msg := loopbackOnly(r); msg != "" {
			d.log.Info("dashboard: refused a request", zap.String("reason", msg), zap.String("remote", r.RemoteAddr))
			d.fail(rw, r, http.StatusForbidden, "", msg)
			return
		}
	}
	if d.prefix != "" && r.URL.Path == d.prefix {
		http.Redirect(rw, r, d.prefix+"/", http.StatusMovedPermanently)
		return
	}
	rest, under := strings.CutPrefix(r.URL.Path, d.prefix+"/")
	if !under {
		d.fail(rw, r, http.StatusNotFound, "", "no such page")
		return
	}
	switch {
	case strings.HasPrefix(rest, "static/"):
		d.static(rw, r, strings.TrimPrefix(rest, "static/"))
		return
	case rest == "login":
		d.login(rw, r)
		return
	}
	who, ok := d.authenticate(rw, r)
	if !ok {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := d.crossSite.Check(r); err != nil {
			d.fail(rw, r, http.StatusForbidden, "", "cross-origin request refused: the form must be sent from the dashboard's own pages")
			return
		}
		if d.readOnly && rest != "logout" {
			d.fail(rw, r, http.StatusForbidden, "", "the dashboard is read-only: it changes nothing")
			return
		}
		if !d.auth.validToken(who, r.PostFormValue(csrfField)) && !d.auth.validToken(who, r.Header.Get(csrfHeader)) {
			d.fail(rw, r, http.StatusForbidden, csrfField, "the form's CSRF token is missing or not this session's: reload the page and try again")
			return
		}
	}
	d.mux.ServeHTTP(rw, r.WithContext(withPrincipal(r.Context(), who)))
}

// recorder notes whether an answer was started.
type recorder struct {
	http.ResponseWriter
	wrote bool
}

func (r *recorder) WriteHeader(status int) {
	r.wrote = true
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
