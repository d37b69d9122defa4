package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/operations/httpapi"
)

// Names of the session cookie and of where a form carries its CSRF token.
const (
	sessionCookie = "jobhost_dashboard"
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
	maxForm       = 64 << 10
)

// principal is who a request acts as. binding is what its CSRF token is
// bound to: its session, its key or its basic-auth user.
type principal struct {
	binding string
	// signedIn is true when the request came with a login session (so the
	// page offers to log out).
	signedIn bool
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// authenticator checks credentials and signs sessions and CSRF tokens. It
// keeps only SHA-256 digests of keys and of the basic-auth password.
type authenticator struct {
	admin   [][sha256.Size]byte
	callers [][sha256.Size]byte
	user    [sha256.Size]byte
	pass    [sha256.Size]byte
	basic   bool
	secret  []byte
	ttl     time.Duration
	now     func() time.Time
}

func newAuthenticator(k httpapi.Keys, b *BasicAuth, secret []byte, ttl time.Duration, now func() time.Time) (*authenticator, error) {
	a := &authenticator{secret: secret, ttl: ttl, now: now}
	for _, key := range k.Admin {
		if strings.TrimSpace(key) == "" {
			return nil, errors.New("dashboard: an admin key is blank")
		}
		a.admin = append(a.admin, sha256.Sum256([]byte(key)))
	}
	for key := range k.Callers {
		if strings.TrimSpace(key) != "" {
			a.callers = append(a.callers, sha256.Sum256([]byte(key)))
		}
	}
	if b != nil {
		if b.User == "" || b.Password == "" || strings.Contains(b.User, ":") {
			return nil, errors.New("dashboard: BasicAuth needs a User (without ':') and a Password")
		}
		a.basic, a.user, a.pass = true, sha256.Sum256([]byte(b.User)), sha256.Sum256([]byte(b.Password))
	}
	return a, nil
}

// open reports whether no authentication is configured.
func (a *authenticator) open() bool { return len(a.admin) == 0 && !a.basic }

// keyKind says what a presented key is.
type keyKind int

const (
	keyInvalid keyKind = iota
	keyAdmin
	keyCaller
)

// check compares key's digest with every known digest in constant time.
func (a *authenticator) check(key string) keyKind {
	sum := sha256.Sum256([]byte(key))
	admin, caller := 0, 0
	for _, d := range a.admin {
		admin |= subtle.ConstantTimeCompare(sum[:], d[:])
	}
	for _, d := range a.callers {
		caller |= subtle.ConstantTimeCompare(sum[:], d[:])
	}
	switch {
	case admin == 1:
		return keyAdmin
	case caller == 1:
		return keyCaller
	}
	return keyInvalid
}

// checkBasic reports whether user and password are the configured ones.
func (a *authenticator) checkBasic(user, pass string) bool {
	if !a.basic {
		return false
	}
	u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(u[:], a.user[:])&subtle.ConstantTimeCompare(p[:], a.pass[:]) == 1
}

func (a *authenticator) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, a.secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// token returns the CSRF token of a principal: an HMAC of its binding.
func (a *authenticator) token(p principal) string {
	return base64.RawURLEncoding.EncodeToString(a.mac("csrf", p.binding))
}

// validToken reports whether t is p's CSRF token.
func (a *authenticator) validToken(p principal, t string) bool {
	return t != "" && p.binding != "" && hmac.Equal([]byte(t), []byte(a.token(p)))
}

// session is what the session cookie holds: a random id, when it ends and
// whether it was made by a login (false: an open dashboard's).
type session struct {
	id       string
	expires  time.Time
	signedIn bool
}

// newSession returns a fresh session.
func (a *authenticator) newSession(signedIn bool) session {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return session{id: base64.RawURLEncoding.EncodeToString(b), expires: a.now().Add(a.ttl), signedIn: signedIn}
}

// encode returns the cookie value: id.expiry.flag.mac.
func (a *authenticator) encode(s session) string {
	exp := make([]byte, 8)
	binary.BigEndian.PutUint64(exp, uint64(s.expires.Unix()))
	flag := "0"
	if s.signedIn {
		flag = "1"
	}
	payload := s.id + "." + base64.RawURLEncoding.EncodeToString(exp) + "." + flag
	return payload + "." + base64.RawURLEncoding.EncodeToString(a.mac("session", payload))
}

// readSession returns the request's session when its cookie is signed by
// this dashboard and has not expired.
func (a *authenticator) readSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 4 {
		return session{}, false
	}
	payload := strings.Join(parts[:3], ".")
	mac, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || !hmac.Equal(mac, a.mac("session", payload)) {
		return session{}, false
	}
	exp, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || len(exp) != 8 {
		return session{}, false
	}
	s := session{id: parts[0], expires: time.Unix(int64(binary.BigEndian.Uint64(exp)), 0), signedIn: parts[2] == "1"}
	if !a.now().Before(s.expires) {
		return session{}, false
	}
	return s, true
}

// setSession sends the session cookie: HttpOnly, SameSite=Strict, Secure
// over TLS, scoped to the dashboard's path.
func (d *dash) setSession(w http.ResponseWriter, r *http.Request, s session) {
	c := &http.Cookie{Name: sessionCookie, Value: d.auth.encode(s), Path: d.prefix + "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
	if s.signedIn {
		c.MaxAge = int(d.auth.ttl / time.Second)
	}
	http.SetCookie(w, c)
}

// authenticate finds who r acts as, or answers the request itself (401,
// 403, or a redirect that drops the key from the address) and returns
// false.
func (d *dash) authenticate(w http.ResponseWriter, r *http.Request) (principal, bool) {
	a := d.auth
	if a.open() {
		s, ok := a.readSession(r)
		if !ok {
			s = a.newSession(false)
			d.setSession(w, r, s)
		}
		return principal{binding: "s:" + s.id}, true
	}
	if key := r.Header.Get(httpapi.KeyHeader); key != "" {
		return d.keyPrincipal(w, r, key, httpapi.KeyHeader)
	}
	if code := r.URL.Query().Get(httpapi.KeyParam); code != "" {
		p, ok := d.keyPrincipal(w, r, code, httpapi.KeyParam)
		if ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			// Trade the key for a session, and take it out of the address
			// bar and the history.
			d.setSession(w, r, a.newSession(true))
			u := *r.URL
			q := u.Query()
			q.Del(httpapi.KeyParam)
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return principal{}, false
		}
		return p, ok
	}
	if user, pass, ok := r.BasicAuth(); ok && a.basic {
		if !a.checkBasic(user, pass) {
			d.log.Info("dashboard: a request's basic credentials are not valid", zap.String("remote", r.RemoteAddr))
			d.challenge(w)
			d.fail(w, r, http.StatusUnauthorized, "Authorization", "the user or password is not valid")
			return principal{}, false
		}
		return principal{binding: "b:" + user}, true
	}
	if s, ok := a.readSession(r); ok && s.signedIn {
		return principal{binding: "s:" + s.id, signedIn: true}, true
	}
	d.challenge(w)
	if r.Method == http.MethodGet && !wantsJSON(r) {
		d.renderLogin(w, r, http.StatusUnauthorized, r.URL.RequestURI(), "")
		return principal{}, false
	}
	d.fail(w, r, http.StatusUnauthorized, httpapi.KeyHeader, "sign in: send an admin key in the "+httpapi.KeyHeader+" header, or log in on the login page")
	return principal{}, false
}

// challenge asks the browser for basic credentials when they are the only
// way in (with keys, the login page asks for either).
func (d *dash) challenge(w http.ResponseWriter) {
	if d.auth.basic && len(d.auth.admin) == 0 {
		w.Header().Set("WWW-Authenticate", `Basic realm="jobhost dashboard", charset="UTF-8"`)
	}
}

// keyPrincipal checks a presented key: an admin key's principal, or 401
// (not valid) or 403 (a caller's key) naming where the key was.
func (d *dash) keyPrincipal(w http.ResponseWriter, r *http.Request, key, from string) (principal, bool) {
	switch d.auth.check(key) {
	case keyAdmin:
		sum := sha256.Sum256([]byte(key))
		return principal{binding: "k:" + base64.RawURLEncoding.EncodeToString(sum[:])}, true
	case keyCaller:
		d.fail(w, r, http.StatusForbidden, from, "a caller's key cannot open the dashboard, which shows every caller's work: use an admin key ("+httpapi.AdminKeySetting+")")
	default:
		d.log.Info("dashboard: a request's key is not valid", zap.String("remote", r.RemoteAddr)) // never the key
		d.fail(w, r, http.StatusUnauthorized, from, "the key is not valid")
	}
	return principal{}, false
}

// login serves the login page (GET) and checks its form (POST).
func (d *dash) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(d.prefix, r.FormValue("next"))
	if d.auth.open() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		d.renderLogin(w, r, http.StatusOK, next, "")
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		d.fail(w, r, http.StatusMethodNotAllowed, "", "the login page takes GET and POST")
		return
	}
	if err := d.crossSite.Check(r); err != nil {
		d.fail(w, r, http.StatusForbidden, "", "cross-origin request refused: log in from the dashboard's own login page")
		return
	}
	key, user, pass := r.PostFormValue("key"), r.PostFormValue("user"), r.PostFormValue("password")
	switch {
	case key != "":
		switch d.auth.check(key) {
		case keyAdmin:
		case keyCaller:
			d.renderLogin(w, r, http.StatusForbidden, next, "A caller's key cannot open the dashboard: use an admin key.")
			return
		default:
			d.log.Info("dashboard: a login's key is not valid", zap.String("remote", r.RemoteAddr))
			d.renderLogin(w, r, http.StatusUnauthorized, next, "The key is not valid.")
			return
		}
	case user != "" || pass != "":
		if !d.auth.checkBasic(user, pass) {
			d.log.Info("dashboard: a login's user or password is not valid", zap.String("remote", r.RemoteAddr))
			d.renderLogin(w, r, http.StatusUnauthorized, next, "The user or password is not valid.")
			return
		}
	default:
		d.renderLogin(w, r, http.StatusBadRequest, next, "Enter a key (or a user and password).")
		return
	}
	d.setSession(w, r, d.auth.newSession(true))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout clears the session cookie. (Sessions are not kept on the server:
// a copied cookie stays valid until it expires.)
func (d *dash) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: d.prefix + "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, d.prefix+"/login", http.StatusSeeOther)
}

// safeNext returns next when it is a path of the dashboard, else the
// overview: the login page never redirects elsewhere.
func safeNext(prefix, next string) string {
	if strings.HasPrefix(next, prefix+"/") && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") &&
		!strings.HasPrefix(next, prefix+"/login") {
		return next
	}
	return prefix + "/"
}

// loopbackOnly returns why r is refused by the loopback rule, or "": the
// client must be on a loopback address, not behind a proxy (forwarding
// headers), and name a loopback host, so that a page on another site
// cannot reach the dashboard by pointing its own name at 127.0.0.1 (DNS
// rebinding).
func loopbackOnly(r *http.Request) string {
	if r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" {
		return "the dashboard answers local clients only, and this request came through a proxy; configure a key and AllowRemote to serve others"
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if addr, err := netip.ParseAddr(host); err != nil || !addr.Unmap().IsLoopback() {
		return "the dashboard answers loopback clients only; configure a key and AllowRemote to serve others"
	}
	if !loopbackHost(r.Host) {
		return "the Host header does not name this machine (localhost, 127.0.0.1 or [::1]): refused, as DNS rebinding would send it"
	}
	return ""
}

// loopbackHost reports whether a Host header names the loopback interface.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}
