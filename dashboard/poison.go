package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
)

type poisonData struct {
	Function status.Function
	// NoAdmin: the function's broker has no poison administration.
	NoAdmin bool
	Source  string
	Poison  string
	Count   counted // poisonCount
	Rows    []poisonRow
	Limit   int
	// Capped: the broker showed fewer messages than it holds.
	Capped bool
}

// poisonFunction finds the {function} of the path (404 naming "function"
// when there is none).
func (d *dash) poisonFunction(w http.ResponseWriter, r *http.Request) (status.Function, bool) {
	name := r.PathValue("function")
	f, ok := findFunction(d.src.Functions(), name)
	if !ok {
		d.fail(w, r, http.StatusNotFound, "function", "no function is named "+strconv.Quote(short(100, name)))
	}
	return f, ok
}

// brokerFailed answers 503 for a broker's error: the page says what failed
// (redacted: no connection strings), the log has it all.
func (d *dash) brokerFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	d.log.Warn("dashboard: "+what+" failed", zap.String("path", r.URL.Path), zap.Error(err))
	w.Header().Set("Retry-After", "5")
	d.fail(w, r, http.StatusServiceUnavailable, "", what+" failed: "+redact.All(err.Error()))
}

// openPoison opens a function's poison administration, or answers.
func (d *dash) openPoison(w http.ResponseWriter, r *http.Request, f status.Function) (triggers.PoisonAdmin, bool) {
	if !f.PoisonAdmin {
		d.fail(w, r, http.StatusConflict, "function", "the poison destination of "+f.Name+" cannot be administered here (its broker has no poison tools: use the broker's own)")
		return nil, false
	}
	adm, err := d.src.OpenPoison(r.Context(), f.Name)
	if err != nil {
		d.brokerFailed(w, r, "opening the poison queue of "+f.Name, err)
		return nil, false
	}
	return adm, true
}

func (d *dash) poison(w http.ResponseWriter, r *http.Request) {
	f, ok := d.poisonFunction(w, r)
	if !ok {
		return
	}
	data := poisonData{Function: f, Poison: f.Poison}
	p := d.newPage(r, "poison", "Poison: "+f.Name, &data)
	p.Flash = poisonFlash(r.URL.Query())
	if !f.PoisonAdmin {
		data.NoAdmin = true
		d.render(w, r, http.StatusOK, "poison", p)
		return
	}
	limit, ok := d.limit(w, r)
	if !ok {
		return
	}
	data.Limit = limit
	adm, ok := d.openPoison(w, r, f)
	if !ok {
		return
	}
	defer adm.Close()
	data.Source, data.Poison = adm.Source(), adm.Poison()
	data.Count = d.poisonCount(r.Context(), f.Name)
	msgs, err := adm.List(r.Context(), limit)
	if err != nil {
		d.brokerFailed(w, r, "listing "+adm.Poison(), err)
		return
	}
	for _, m := range msgs {
		data.Rows = append(data.Rows, newPoisonRow(f, m))
	}
	if c, ok := data.Count.Val.(poisonCount); ok && len(msgs) < limit && len(msgs) < c.N {
		data.Capped = true
	}
	d.render(w, r, http.StatusOK, "poison", p)
}

// poisonFlash says what the action before the redirect did; it is built
// from the query's numbers only.
func poisonFlash(q url.Values) string {
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		return ""
	}
	failed, _ := strconv.Atoi(q.Get("failed"))
	var s string
	switch q.Get("done") {
	case "requeued":
		s = "Requeued " + strconv.Itoa(n) + " message(s) to the source queue."
	case "purged":
		s = "Deleted " + strconv.Itoa(n) + " message(s)."
	default:
		return ""
	}
	if failed > 0 {
		s += " " + strconv.Itoa(failed) + " failed and stay in the poison queue (see the host's log)."
	}
	return s
}

// confirmData is a confirmation page: a question and a form that does it.
type confirmData struct {
	Question string
	Detail   string
	Action   string // the form's URL
	Fields   map[string]string
	Button   string
	Danger   bool
	Back     string
}

// poisonConfirm asks before a poison action: action=requeue&id=, or
// action=requeue-all, or action=purge.
func (d *dash) poisonConfirm(w http.ResponseWriter, r *http.Request) {
	if d.readOnly {
		d.fail(w, r, http.StatusForbidden, "", "the dashboard is read-only: it changes nothing")
		return
	}
	f, ok := d.poisonFunction(w, r)
	if !ok {
		return
	}
	base := d.prefix + "/poison/" + url.PathEscape(f.Name)
	poison := f.Poison
	if poison == "" {
		poison = "the poison queue"
	}
	c := confirmData{Back: base, Fields: map[string]string{}}
	q := r.URL.Query()
	switch q.Get("action") {
	case "requeue":
		id := q.Get("id")
		if id == "" || len(id) > maxIDLength {
			d.fail(w, r, http.StatusBadRequest, "id", "give the id of the message to requeue (at most "+strconv.Itoa(maxIDLength)+" characters)")
			return
		}
		c.Question = "Requeue message " + id + "?"
		c.Detail = "It is sent back to " + f.Queue + " with its attempts counted afresh, then removed from " + poison + "."
		c.Action, c.Button, c.Fields["id"] = base+"/requeue", "Requeue it", id
	case "requeue-all":
		c.Question = "Requeue every message of " + poison + "?"
		c.Detail = d.countSentence(r.Context(), f) + " Each is sent back to " + f.Queue + " before it is removed from " + poison + ": an interruption can duplicate a message, never lose one."
		c.Action, c.Button, c.Fields["all"] = base+"/requeue", "Requeue all", "1"
	case "purge":
		c.Question = "Delete every message of " + poison + "?"
		c.Detail = d.countSentence(r.Context(), f) + " They are deleted for good."
		c.Action, c.Button, c.Danger = base+"/purge", "Delete them", true
	default:
		d.fail(w, r, http.StatusBadRequest, "action", "action must be requeue (with id), requeue-all or purge")
		return
	}
	d.render(w, r, http.StatusOK, "confirm", d.newPage(r, "poison", "Confirm", c))
}

// countSentence says how many poison messages there are, as last counted.
func (d *dash) countSentence(ctx context.Context, f status.Function) string {
	if c, ok := d.poisonCount(ctx, f.Name).Val.(poisonCount); ok {
		return "It holds about " + strconv.Itoa(c.N) + " message(s)."
	}
	return ""
}

// poisonRequeue requeues one message (id) or all (all=1).
func (d *dash) poisonRequeue(w http.ResponseWriter, r *http.Request) {
	f, ok := d.poisonFunction(w, r)
	if !ok {
		return
	}
	id, all := r.PostFormValue("id"), r.PostFormValue("all") == "1"
	if (id == "") == !all || len(id) > maxIDLength {
		d.fail(w, r, http.StatusBadRequest, "id", "give either the id of one message (id) or all=1")
		return
	}
	adm, ok := d.openPoison(w, r, f)
	if !ok {
		return
	}
	defer adm.Close()
	defer d.cache.invalidate("poison:" + f.Name)
	limit := 1
	if all {
		n, exists, err := adm.Count(r.Context())
		if err != nil {
			d.brokerFailed(w, r, "counting "+adm.Poison(), err)
			return
		}
		if !exists || n == 0 {
			d.redirectFlash(w, r, f, "requeued", 0, 0)
			return
		}
		limit = n
	}
	moved, failed := 0, 0
	found, err := adm.Requeue(r.Context(), id, limit, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			failed++
			d.log.Warn("dashboard: requeueing a poison message failed", zap.String("function", f.Name), zap.String("id", m.ID), zap.Error(err))
			return
		}
		moved++
	})
	switch {
	case err != nil:
		d.brokerFailed(w, r, "requeueing from "+adm.Poison()+" (after "+strconv.Itoa(moved)+" moved; the rest stay)", err)
	case !all && !found:
		d.fail(w, r, http.StatusNotFound, "id", "message "+strconv.Quote(short(100, id))+" is not in "+adm.Poison()+": it may have been requeued or purged meanwhile")
	default:
		d.log.Info("dashboard: requeued poison messages", zap.String("function", f.Name), zap.Int("requeued", moved), zap.Int("failed", failed))
		d.redirectFlash(w, r, f, "requeued", moved, failed)
	}
}

// poisonPurge deletes every poison message (as many as Count finds).
func (d *dash) poisonPurge(w http.ResponseWriter, r *http.Request) {
	f, ok := d.poisonFunction(w, r)
	if !ok {
		return
	}
	adm, ok := d.openPoison(w, r, f)
	if !ok {
		return
	}
	defer adm.Close()
	defer d.cache.invalidate("poison:" + f.Name)
	n, exists, err := adm.Count(r.Context())
	if err != nil {
		d.brokerFailed(w, r, "counting "+adm.Poison(), err)
		return
	}
	purged := 0
	if exists && n > 0 {
		if purged, err = adm.Purge(r.Context(), n); err != nil {
			d.brokerFailed(w, r, "purging "+adm.Poison()+" (after "+strconv.Itoa(purged)+" deleted)", err)
			return
		}
	}
	d.log.Info("dashboard: purged poison messages", zap.String("function", f.Name), zap.Int("purged", purged))
	d.redirectFlash(w, r, f, "purged", purged, 0)
}

func (d *dash) redirectFlash(w http.ResponseWriter, r *http.Request, f status.Function, done string, n, failed int) {
	q := url.Values{"done": {done}, "n": {strconv.Itoa(n)}}
	if failed > 0 {
		q.Set("failed", strconv.Itoa(failed))
	}
	http.Redirect(w, r, d.prefix+"/poison/"+url.PathEscape(f.Name)+"?"+q.Encode(), http.StatusSeeOther)
}
