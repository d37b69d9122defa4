// Command web is the SharePoint add-in's web app: a separate process from
// the worker, with a client of its own. Its form submits a "modify this
// site" request as a background operation (client.Start with
// sitemodify.ProcessSiteModify) instead of doing the slow work inside the
// HTTP request, and its status page reads the operation's record, which the
// worker keeps up to date, until it completes.
//
// It reads host.json and local.settings.json as the worker does, so it
// sends to the same queue and reads the records from the same store (Table
// Storage on the functions' Storage connection by default):
//
//	cd examples/sitemodify && go run ./web   # then open http://127.0.0.1:8080
//
// Routes: GET / (the form), POST /requests (submit; 303 to the request's
// page), GET /requests/{id} (its status, refreshed every second until it
// completes), POST /requests/{id}/cancel.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/examples/sitemodify"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sitemodify-web:", runtime.Redact(err.Error()))
		os.Exit(1)
	}
}

// run parses the flags, opens the client and serves until ctx ends.
func run(ctx context.Context, args, environ []string, out io.Writer) error {
	fs := flag.NewFlagSet("sitemodify-web", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve on")
	hostJSON := fs.String("host-json", "host.json", "the worker's host.json")
	settingsFile := fs.String("settings", "local.settings.json", "the worker's local.settings.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, closeStore, err := openClient(ctx, environ, *hostJSON, *settingsFile, functions.Default)
	if err != nil {
		return err
	}
	defer closeStore()
	defer c.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newHandler(c), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "sitemodify-web: serving http://%s\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// openClient builds a client configured as the worker's host is, with the
// operations store host.json names (by default Table Storage on the
// functions' Storage connection).
func openClient(ctx context.Context, environ []string, hostJSON, settingsFile string, reg *functions.Registry) (*client.Client, func(), error) {
	settings, err := runtime.LoadAppSettings(environ, settingsFile, false)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := runtime.LoadConfig(hostJSON, false, settings)
	if err != nil {
		return nil, nil, err
	}
	funcs, _, err := runtime.ResolveFunctions(cfg, reg, settings)
	if err != nil {
		return nil, nil, err
	}
	store, err := runtime.OpenOperationsStore(ctx, cfg, funcs, settings.WithDefaults(reg.SettingDefaults()), false)
	if err != nil {
		return nil, nil, err
	}
	if store == nil {
		return nil, nil, errors.New("host.json names no operations store")
	}
	c, err := runtime.NewClient(cfg, settings, reg, store)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return c, func() { store.Close() }, nil
}

// app serves the pages.
type app struct{ c *client.Client }

// newHandler returns the web app's routes, refusing cross-origin form posts.
func newHandler(c *client.Client) http.Handler {
	a := &app{c: c}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.form)
	mux.HandleFunc("POST /requests", a.submit)
	mux.HandleFunc("GET /requests/{id}", a.status)
	mux.HandleFunc("POST /requests/{id}/cancel", a.cancel)
	return http.NewCrossOriginProtection().Handler(mux)
}

// formData fills the form.
type formData struct {
	SiteURL, Requestor, WorkMs string
	// Key is the submission's idempotency key: submitting the same form
	// twice (a double click, a reload) starts one operation.
	Key   string
	Error string
}

func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *app) form(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusOK, formPage, formData{SiteURL: "https://contoso.sharepoint.com/sites/marketing",
		Requestor: "Megan Bowen", WorkMs: "3000", Key: newKey()})
}

// submit starts the background operation and redirects to its page.
func (a *app) submit(w http.ResponseWriter, r *http.Request) {
	d := formData{SiteURL: strings.TrimSpace(r.PostFormValue("siteUrl")), Requestor: strings.TrimSpace(r.PostFormValue("requestor")),
		WorkMs: strings.TrimSpace(r.PostFormValue("workMs")), Key: r.PostFormValue("key")}
	if !validKey(d.Key) {
		d.Key = newKey()
	}
	ms, err := strconv.Atoi(d.WorkMs)
	if err != nil || ms < 0 {
		d.Error = "work ms must be a whole number of milliseconds, 0 or more"
		render(w, http.StatusBadRequest, formPage, d)
		return
	}
	req := sitemodify.SiteModifyRequest{SiteURL: d.SiteURL, RequestorName: d.Requestor, WorkMs: ms}
	rec, err := client.Start(r.Context(), a.c, sitemodify.ProcessSiteModify, req, client.SubmitOptions{IdempotencyKey: d.Key})
	switch {
	case err == nil:
	case errors.Is(err, client.ErrIdempotencyConflict):
		d.Error, d.Key = "this form was submitted before with other values; submit it again to start a new request", newKey()
		render(w, http.StatusConflict, formPage, d)
		return
	case client.Unsendable(err):
		d.Error = err.Error()
		render(w, http.StatusBadRequest, formPage, d)
		return
	default:
		if rec == nil {
			d.Error = "the request could not be queued; try again later"
			render(w, http.StatusServiceUnavailable, formPage, d)
			return
		}
		// The record exists (marked Failed): its page says what happened.
	}
	http.Redirect(w, r, "/requests/"+rec.ID, http.StatusSeeOther)
}

func validKey(k string) bool {
	_, err := hex.DecodeString(k)
	return err == nil && len(k) == 32
}

// statusData fills the status page.
type statusData struct {
	Rec      *operations.Record
	Request  sitemodify.SiteModifyRequest
	Done     bool
	Progress string
	Output   string
	Notice   string
}

// status shows the record.
func (a *app) status(w http.ResponseWriter, r *http.Request) {
	rec, err := a.c.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, operations.ErrNotFound) {
		http.Error(w, "no such request (it may have expired)", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "the request's status cannot be read now; try again later", http.StatusServiceUnavailable)
		return
	}
	d := statusData{Rec: rec, Done: rec.Status.Final(), Progress: pretty(rec.Progress), Output: pretty(rec.Output)}
	_ = json.Unmarshal(rec.Input, &d.Request)
	if r.URL.Query().Has("completed") {
		d.Notice = "It had already completed: it cannot be cancelled."
	}
	render(w, http.StatusOK, statusPage, d)
}

// cancel asks for the operation to be cancelled and goes back to its page.
func (a *app) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := a.c.Cancel(r.Context(), id)
	switch {
	case err == nil:
		http.Redirect(w, r, "/requests/"+id, http.StatusSeeOther)
	case errors.Is(err, operations.ErrCompleted):
		http.Redirect(w, r, "/requests/"+id+"?completed", http.StatusSeeOther)
	case errors.Is(err, operations.ErrNotFound):
		http.Error(w, "no such request (it may have expired)", http.StatusNotFound)
	default:
		http.Error(w, "the request cannot be cancelled now; try again later", http.StatusServiceUnavailable)
	}
}

// pretty indents a JSON value ("" for none).
func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

func render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = b.WriteTo(w)
}

//go:embed templates/*.html
var templateFiles embed.FS

var (
	templates  = template.Must(template.ParseFS(templateFiles, "templates/*.html"))
	formPage   = templates.Lookup("form.html")
	statusPage = templates.Lookup("status.html")
)
