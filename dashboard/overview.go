package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/status"
)

// overviewRow is one function on the overview.
type overviewRow struct {
	status.Function
	Rate        rate
	PoisonCount counted // poisonCount, when the function has poison administration
}

// poisonCount is a poison destination's cached count.
type poisonCount struct {
	N      int
	Exists bool
}

// opCounts are the operations' cached counts by status.
type opCounts struct {
	counted
	By    []statusCount
	Total int
}

// statusCount is one status's count.
type statusCount struct {
	Status operations.Status
	N      int
}

type overviewData struct {
	Rows []overviewRow
	Ops  *opCounts // nil without operations or a counter
}

func (d *dash) overview(w http.ResponseWriter, r *http.Request) {
	fs := d.src.Functions()
	rates := d.rates.observe(fs)
	rows := make([]overviewRow, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		rows[i] = overviewRow{Function: f, Rate: rates[f.Name]}
		if f.PoisonAdmin {
			wg.Go(func() { rows[i].PoisonCount = d.poisonCount(r.Context(), f.Name) })
		}
	}
	data := overviewData{Rows: rows}
	if d.ops != nil && d.counter != nil {
		wg.Go(func() { data.Ops = d.opCounts(r.Context(), "") })
	}
	wg.Wait()
	d.render(w, r, http.StatusOK, "overview", d.newPage(r, "overview", "Overview", data))
}

// poisonCount returns the cached count of a function's poison messages.
func (d *dash) poisonCount(ctx context.Context, function string) counted {
	return d.cache.get(ctx, "poison:"+function, func(ctx context.Context) (any, error) {
		adm, err := d.src.OpenPoison(ctx, function)
		if err != nil {
			return nil, err
		}
		defer adm.Close()
		n, exists, err := adm.Count(ctx)
		return poisonCount{N: n, Exists: exists}, err
	})
}

// opCounts returns the cached counts of a function's operations ("" all),
// or nil when the store cannot count (errors.ErrUnsupported).
func (d *dash) opCounts(ctx context.Context, function string) *opCounts {
	c := d.cache.get(ctx, "ops:"+function, func(ctx context.Context) (any, error) {
		return d.counter.CountByStatus(ctx, function)
	})
	if errors.Is(c.Cause, errors.ErrUnsupported) {
		return nil
	}
	out := &opCounts{counted: c}
	if m, ok := c.Val.(map[operations.Status]int); ok {
		for _, s := range operations.Statuses {
			out.By = append(out.By, statusCount{s, m[s]})
			out.Total += m[s]
		}
	}
	return out
}

// outcomes are the invocation outcomes the filter offers.
var outcomes = []string{"succeeded", "failed", "poisoned", "cancelled", "operation-canceled"}

type invocationsData struct {
	Functions []string
	Outcomes  []string
	Function  string
	Outcome   string
	Message   string
	Limit     int
	Rows      []status.Invocation
	More      bool
	MoreURL   string
}

// maxIDLength bounds ids and other free text in a query.
const maxIDLength = 1024

func (d *dash) invocations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fs := d.src.Functions()
	data := invocationsData{Outcomes: outcomes, Message: strings.TrimSpace(q.Get("message"))}
	for _, f := range fs {
		data.Functions = append(data.Functions, f.Name)
	}
	if v := q.Get("function"); v != "" {
		f, ok := findFunction(fs, v)
		if !ok {
			d.fail(w, r, http.StatusBadRequest, "function", "no function is named "+strconv.Quote(v))
			return
		}
		data.Function = f.Name
	}
	if v := q.Get("outcome"); v != "" {
		if !slices.Contains(outcomes, v) {
			d.fail(w, r, http.StatusBadRequest, "outcome", "unknown outcome "+strconv.Quote(v)+"; one of "+strings.Join(outcomes, ", "))
			return
		}
		data.Outcome = v
	}
	if len(data.Message) > maxIDLength {
		d.fail(w, r, http.StatusBadRequest, "message", "a message id is at most "+strconv.Itoa(maxIDLength)+" characters")
		return
	}
	limit, ok := d.limit(w, r)
	if !ok {
		return
	}
	data.Limit = limit
	rows := d.src.Invocations(status.Filter{Function: data.Function, Outcome: data.Outcome, MessageID: data.Message, Limit: limit + 1})
	if len(rows) > limit {
		rows, data.More = rows[:limit], true
		if next := min(limit*2, MaxPageSize); next > limit {
			u := url.Values{"limit": {strconv.Itoa(next)}}
			for k, v := range map[string]string{"function": data.Function, "outcome": data.Outcome, "message": data.Message} {
				if v != "" {
					u.Set(k, v)
				}
			}
			data.MoreURL = d.prefix + "/invocations?" + u.Encode()
		}
	}
	data.Rows = rows
	d.render(w, r, http.StatusOK, "invocations", d.newPage(r, "invocations", "Invocations", data))
}

// limit reads the limit query parameter: the page size by default, else
// 1..MaxPageSize (400 naming "limit" otherwise).
func (d *dash) limit(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return d.pageSize, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPageSize {
		d.fail(w, r, http.StatusBadRequest, "limit", "limit must be a whole number from 1 to "+strconv.Itoa(MaxPageSize)+", got "+strconv.Quote(short(20, v)))
		return 0, false
	}
	return n, true
}

// findFunction finds a function by name, ignoring case as registration
// does.
func findFunction(fs []status.Function, name string) (status.Function, bool) {
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return f, true
		}
	}
	return status.Function{}, false
}
