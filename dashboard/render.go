package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"
)

//go:embed web/*.html web/static/*
var webFS embed.FS

var errPanicked = errors.New("the count panicked (logged)")

// pageSet holds the parsed pages and the static files' version (for cache
// busting).
type pageSet struct {
	pages   map[string]*template.Template
	version string
}

// pageNames are the templates besides the layout, one per page.
var pageNames = []string{"overview", "invocations", "poison", "confirm", "operations", "operation", "login", "error"}

func parsePages() (*pageSet, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(webFS, "web/layout.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	ps := &pageSet{pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.Must(layout.Clone()).ParseFS(webFS, "web/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: templates: %w", err)
		}
		ps.pages[name] = t
	}
	h := sha256.New()
	_ = fs.WalkDir(webFS, "web/static", func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, _ := webFS.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	ps.version = hex.EncodeToString(h.Sum(nil))[:12]
	return ps, nil
}

// page is what every page's template gets.
type page struct {
	Title     string
	Nav       string // the active navigation entry
	Base      string // the prefix, for links
	Asset     string // the static files' version
	CSRF      string
	ReadOnly  bool
	SignedIn  bool
	Auth      bool // authentication is configured
	HasOps    bool
	RefreshMS int64
	Flash     string
	Now       time.Time
	Data      any
}

// newPage fills in what every page needs from the request.
func (d *dash) newPage(r *http.Request, nav, title string, data any) *page {
	who := principalFrom(r.Context())
	p := &page{
		Title: title, Nav: nav, Base: d.prefix, Asset: d.pages.version,
		ReadOnly: d.readOnly, SignedIn: who.signedIn, Auth: !d.auth.open(), HasOps: d.ops != nil,
		RefreshMS: d.refresh.Milliseconds(), Now: d.now(), Data: data,
	}
	if who.binding != "" {
		p.CSRF = d.auth.token(who)
	}
	return p
}

// render executes a page into a buffer and, when that worked, writes it
// with status; a template error answers 500 (and is logged).
func (d *dash) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	var buf bytes.Buffer
	if err := d.pages.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		d.log.Error("dashboard: rendering a page failed", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error rendering the page (logged)", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// errorPage is the data of the error page.
type errorPage struct {
	Status  int
	Text    string
	Field   string
	Message string
}

// fail answers an error: JSON in the operations API's shape to a client
// that asks for JSON (the pages' script does), a page otherwise. field
// names the form field, query parameter or header at fault ("" none).
func (d *dash) fail(w http.ResponseWriter, r *http.Request, status int, field, msg string) {
	if wantsJSON(r) {
		type body struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field,omitempty"`
		}
		b, _ := json.Marshal(map[string]body{"error": {Code: errorCode(status), Message: msg, Field: field}})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(append(b, '\n'))
		return
	}
	title := http.StatusText(status)
	d.render(w, r, status, "error", d.newPage(r, "", title, errorPage{Status: status, Text: title, Field: field, Message: msg}))
}

// errorCode is the JSON error code of a status, as httpapi names them.
func errorCode(status int) string {
	return strings.ReplaceAll(strings.ReplaceAll(http.StatusText(status), " ", ""), "-", "")
}

// wantsJSON reports whether the client asked for JSON rather than HTML.
func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

// static serves an embedded static file; its URL carries the files'
// version, so it may be cached.
func (d *dash) static(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		d.fail(w, r, http.StatusMethodNotAllowed, "", "static files take GET")
		return
	}
	b, err := webFS.ReadFile("web/static/" + name)
	if err != nil || strings.Contains(name, "/") {
		d.fail(w, r, http.StatusNotFound, "", "no such file")
		return
	}
	w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	w.Header().Set("Cache-Control", "private, max-age=3600")
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// Template functions.
var funcs = template.FuncMap{
	"ts":    formatTime,
	"ago":   ago,
	"dur":   formatDuration,
	"short": short,
	"rate":  formatRate,
	"statusClass": func(s string) string {
		switch strings.ToLower(s) {
		case "succeeded", "listening", "completed":
			return "ok"
		case "failed", "failing", "poisoned":
			return "bad"
		case "canceling", "canceled", "cancelled", "operation-canceled", "stopping", "stopped", "disabled":
			return "muted"
		}
		return "busy"
	},
}

// formatTime renders t in UTC to the second ("" for zero).
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// ago renders how long before now t was ("3m ago").
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// formatDuration renders a duration to about three digits.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// formatRate renders a rate a second ("—" when there is none yet).
func formatRate(r rate) string {
	switch {
	case !r.OK:
		return "—"
	case r.PerSecond == 0:
		return "0/s"
	case r.PerSecond < 10:
		return fmt.Sprintf("%.2f/s", r.PerSecond)
	}
	return fmt.Sprintf("%.0f/s", math.Round(r.PerSecond))
}

// short cuts s to n runes, marking the cut.
func short(n int, s string) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// loginData is the login page's.
type loginData struct {
	Next, Error string
	Keys, Basic bool
}

// renderLogin shows the login form (with status: 401 when a page was
// refused for want of credentials).
func (d *dash) renderLogin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	p := d.newPage(r, "", "Sign in", loginData{Next: safeNext(d.prefix, next), Error: msg, Keys: len(d.auth.admin) > 0, Basic: d.auth.basic})
	p.RefreshMS = 0
	d.render(w, r, status, "login", p)
}
