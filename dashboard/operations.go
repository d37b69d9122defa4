package dashboard

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/operations"
)

type operationsData struct {
	Functions []string
	Statuses  []operations.Status
	Function  string
	Status    string
	Limit     int
	Rows      []*operations.Record
	Counts    *opCounts // nil without a counter
	Next      string    // the next page's URL ("" on the last)
	First     string    // the first page's URL when this is not it
}

// hasOps answers 404 when the dashboard has no operations.
func (d *dash) hasOps(w http.ResponseWriter, r *http.Request) bool {
	if d.ops == nil {
		d.fail(w, r, http.StatusNotFound, "", "this host keeps no background operations (no operations store is configured)")
		return false
	}
	return true
}

// opsFailed answers a store's error: 404, 409, 400 for the caller's
// mistakes, 503 (logged, redacted) for the store's.
func (d *dash) opsFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, operations.ErrNotFound):
		d.fail(w, r, http.StatusNotFound, "id", "no such operation (it may have expired)")
	case errors.Is(err, operations.ErrCompleted):
		d.fail(w, r, http.StatusConflict, "id", "the operation has already completed: there is nothing to cancel")
	case errors.Is(err, operations.ErrInvalidCursor):
		d.fail(w, r, http.StatusBadRequest, "cursor", "the cursor is not one a page gave: start again from the first page")
	case errors.Is(err, client.ErrNoStore):
		d.fail(w, r, http.StatusNotFound, "", "this host keeps no background operations (no operations store is configured)")
	default:
		d.log.Warn("dashboard: "+what+" failed", zap.String("path", r.URL.Path), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		d.fail(w, r, http.StatusServiceUnavailable, "", what+" failed: "+redact.All(err.Error()))
	}
}

func (d *dash) operationsList(w http.ResponseWriter, r *http.Request) {
	if !d.hasOps(w, r) {
		return
	}
	q := r.URL.Query()
	data := operationsData{Functions: d.ops.Functions(), Statuses: operations.Statuses}
	slices.Sort(data.Functions)
	query := operations.Query{}
	if v := q.Get("function"); v != "" {
		i := slices.IndexFunc(data.Functions, func(f string) bool { return strings.EqualFold(f, v) })
		if i < 0 {
			d.fail(w, r, http.StatusBadRequest, "function", "no function that takes operations is named "+strconv.Quote(short(100, v)))
			return
		}
		data.Function, query.Name = data.Functions[i], data.Functions[i]
	}
	if v := q.Get("status"); v != "" {
		st, err := operations.ParseStatus(v)
		if err != nil {
			d.fail(w, r, http.StatusBadRequest, "status", short(300, err.Error()))
			return
		}
		data.Status, query.Status = st.String(), []operations.Status{st}
	}
	limit, ok := d.limit(w, r)
	if !ok {
		return
	}
	data.Limit, query.Limit = limit, limit
	if query.Cursor = q.Get("cursor"); len(query.Cursor) > 4*maxIDLength {
		d.fail(w, r, http.StatusBadRequest, "cursor", "the cursor is not one a page gave: start again from the first page")
		return
	}
	page, err := d.ops.List(r.Context(), query)
	if err != nil {
		d.opsFailed(w, r, "listing operations", err)
		return
	}
	data.Rows = page.Records
	link := func(cursor string) string {
		v := url.Values{}
		for k, s := range map[string]string{"function": data.Function, "status": data.Status, "cursor": cursor} {
			if s != "" {
				v.Set(k, s)
			}
		}
		if limit != d.pageSize {
			v.Set("limit", strconv.Itoa(limit))
		}
		if len(v) == 0 {
			return d.prefix + "/operations"
		}
		return d.prefix + "/operations?" + v.Encode()
	}
	if page.Next != "" {
		data.Next = link(page.Next)
	}
	if query.Cursor != "" {
		data.First = link("")
	}
	if d.counter != nil {
		data.Counts = d.opCounts(r.Context(), data.Function)
	}
	d.render(w, r, http.StatusOK, "operations", d.newPage(r, "operations", "Operations", data))
}

type operationData struct {
	Rec      *operations.Record
	State    string
	Input    shown
	Output   shown
	Progress shown
	Callback string
	Flash    string
}

// operationID reads the {id} of the path of an operation's page: 404 when
// the host keeps no operations, 400 naming "id" when it cannot be one.
func (d *dash) operationID(w http.ResponseWriter, r *http.Request) (string, bool) {
	if !d.hasOps(w, r) {
		return "", false
	}
	id := r.PathValue("id")
	if id == "" || len(id) > maxIDLength {
		d.fail(w, r, http.StatusBadRequest, "id", "not an operation id")
		return "", false
	}
	return id, true
}

func (d *dash) operationDetail(w http.ResponseWriter, r *http.Request) {
	id, ok := d.operationID(w, r)
	if !ok {
		return
	}
	rec, err := d.ops.Get(r.Context(), id)
	if err != nil {
		d.opsFailed(w, r, "reading operation "+id, err)
		return
	}
	data := operationData{Rec: rec, State: rec.State().String(), Input: showJSON(rec.Input), Output: showJSON(rec.Output),
		Progress: showJSON(rec.Progress), Callback: callbackShown(rec.CallbackURL)}
	p := d.newPage(r, "operations", "Operation "+rec.ID, data)
	switch r.URL.Query().Get("done") {
	case "canceling":
		p.Flash = "Cancel asked: the running function is told to stop."
	case "canceled":
		p.Flash = "Canceled."
	}
	d.render(w, r, http.StatusOK, "operation", p)
}

// callbackShown is a callback URL without its query and user info, which
// may carry tokens.
func callbackShown(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(set)"
	}
	out := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		out += "?…"
	}
	return out
}

// operationConfirm asks before cancelling.
func (d *dash) operationConfirm(w http.ResponseWriter, r *http.Request) {
	if d.readOnly {
		d.fail(w, r, http.StatusForbidden, "", "the dashboard is read-only: it changes nothing")
		return
	}
	id, ok := d.operationID(w, r)
	if !ok {
		return
	}
	rec, err := d.ops.Get(r.Context(), id)
	if err != nil {
		d.opsFailed(w, r, "reading operation "+id, err)
		return
	}
	if rec.Status.Final() {
		d.fail(w, r, http.StatusConflict, "id", "the operation has already completed ("+rec.Status.String()+"): there is nothing to cancel")
		return
	}
	base := d.prefix + "/operations/" + url.PathEscape(rec.ID)
	c := confirmData{
		Question: "Cancel operation " + rec.ID + " (" + rec.Name + ")?",
		Detail:   "It is " + rec.Status.String() + ". One not started yet ends Canceled at once; a running one goes to Canceling and its function is told to stop.",
		Action:   base + "/cancel", Button: "Cancel the operation", Danger: true, Back: base, Fields: map[string]string{},
	}
	d.render(w, r, http.StatusOK, "confirm", d.newPage(r, "operations", "Confirm", c))
}

func (d *dash) operationCancel(w http.ResponseWriter, r *http.Request) {
	id, ok := d.operationID(w, r)
	if !ok {
		return
	}
	rec, err := d.ops.Cancel(r.Context(), id)
	if err != nil {
		d.opsFailed(w, r, "cancelling operation "+id, err)
		return
	}
	d.cache.invalidate("ops:")
	d.cache.invalidate("ops:" + rec.Name)
	d.log.Info("dashboard: cancelled an operation", zap.String("id", rec.ID), zap.String("status", rec.Status.String()))
	done := "canceling"
	if rec.Status == operations.Canceled {
		done = "canceled"
	}
	http.Redirect(w, r, d.prefix+"/operations/"+url.PathEscape(rec.ID)+"?done="+done, http.StatusSeeOther)
}
