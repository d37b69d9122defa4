package httpapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// paramError is a bad query parameter or header: the answer is 400 naming
// it.
type paramError struct {
	// Param names the parameter; never "".
	Param string
	// Message says what is wrong.
	Message string
}

func (e *paramError) Error() string { return e.Param + ": " + e.Message }

// listQuery is what GET {prefix}?… asks for.
type listQuery struct {
	// Function selects one function's records ("" all).
	Function string
	// Statuses selects records in one of these, from status= and state=
	// together; nil selects any. Sorted, without repeats.
	Statuses []operations.Status
	// None: status= and state= select nothing together.
	None bool
	// Since selects records created at or after it (zero: any).
	Since time.Time
	// RunAs selects one caller's records (admin only; "" any).
	RunAs string
	// Limit is the page size (0: the store's default).
	Limit int
	// Cursor continues a listing.
	Cursor string
}

// Parameters a listing takes.
const (
	paramFunction = "function"
	paramStatus   = "status"
	paramState    = "state"
	paramSince    = "since"
	paramRunAs    = "runAs"
	paramLimit    = "limit"
	paramCursor   = "cursor"
	// maxParam bounds the length of one parameter value.
	maxParam = 4096
)

// parseListQuery reads a listing's raw query string. status and state take
// names or codes, separated by commas or repeated; a record must match
// both when both are given. since is RFC 3339 (a '+' the query turned
// into a space is read back as '+'). limit is 1..1000. The key parameter
// (code) is skipped; any other parameter is an error, so a misspelt
// filter does not silently list everything. Empty values count as
// absent. Every error is a *paramError naming the parameter.
func parseListQuery(raw string) (listQuery, error) {
	var q listQuery
	var status, state []operations.Status
	var hasStatus, hasState bool
	seen := map[string]bool{}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return q, &paramError{Param: nonEmpty(rawKey), Message: "the parameter's name is not correctly escaped"}
		}
		if key == "" {
			return q, &paramError{Param: "query", Message: "a parameter has no name"}
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return q, &paramError{Param: key, Message: "the value is not correctly escaped"}
		}
		if len(value) > maxParam {
			return q, &paramError{Param: key, Message: fmt.Sprintf("the value is longer than %d bytes", maxParam)}
		}
		switch key {
		case KeyParam:
			continue
		case paramFunction, paramStatus, paramState, paramSince, paramRunAs, paramLimit, paramCursor:
		default:
			return q, &paramError{Param: key, Message: "unknown parameter (function, status, state, since, runAs, limit, cursor)"}
		}
		if value == "" {
			continue
		}
		switch key {
		case paramStatus:
			hasStatus = true
			for v := range strings.SplitSeq(value, ",") {
				if v = strings.TrimSpace(v); v == "" {
					continue
				}
				s, err := operations.ParseStatus(v)
				if err != nil {
					return q, &paramError{Param: key, Message: err.Error()}
				}
				status = append(status, s)
			}
			continue
		case paramState:
			hasState = true
			for v := range strings.SplitSeq(value, ",") {
				if v = strings.TrimSpace(v); v == "" {
					continue
				}
				st, err := parseState(v)
				if err != nil {
					return q, &paramError{Param: key, Message: err.Error()}
				}
				for _, s := range operations.Statuses {
					if s.State() == st {
						state = append(state, s)
					}
				}
			}
			continue
		}
		if seen[key] {
			return q, &paramError{Param: key, Message: "the parameter is given more than once"}
		}
		seen[key] = true
		switch key {
		case paramFunction:
			q.Function = value
		case paramRunAs:
			q.RunAs = value
		case paramCursor:
			q.Cursor = value
		case paramSince:
			t, err := time.Parse(time.RFC3339, value)
			if err != nil && strings.Contains(value, " ") {
				t, err = time.Parse(time.RFC3339, strings.ReplaceAll(value, " ", "+"))
			}
			if err != nil {
				return q, &paramError{Param: key, Message: "not an RFC 3339 time (2006-01-02T15:04:05Z)"}
			}
			if y := t.UTC().Year(); y < 1 || y > 9999 {
				return q, &paramError{Param: key, Message: "the time is out of range"}
			}
			q.Since = t.UTC()
		case paramLimit:
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 || n > operations.MaxPage {
				return q, &paramError{Param: key, Message: fmt.Sprintf("the page size is a number from 1 to %d", operations.MaxPage)}
			}
			q.Limit = n
		}
	}
	q.Statuses = combineStatuses(status, hasStatus && len(status) > 0, state, hasState && len(state) > 0)
	q.None = q.Statuses != nil && len(q.Statuses) == 0
	return q, nil
}

// combineStatuses intersects the status= and state= selections: nil when
// neither selects, empty when together they select nothing.
func combineStatuses(status []operations.Status, hasStatus bool, state []operations.Status, hasState bool) []operations.Status {
	var out []operations.Status
	switch {
	case hasStatus && hasState:
		out = []operations.Status{}
		for _, s := range status {
			if slices.Contains(state, s) {
				out = append(out, s)
			}
		}
	case hasStatus:
		out = status
	case hasState:
		out = state
	default:
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// parseState reads a state by name (case-insensitive) or code.
func parseState(v string) (operations.State, error) {
	for _, s := range []operations.State{operations.Ready, operations.Locked, operations.Completed} {
		if strings.EqualFold(v, s.String()) || v == strconv.Itoa(int(s)) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown state %q (one of Ready, Locked, Completed, or their codes 0, 2, 3)", v)
}

// encode writes q back as a query string (statuses by name, as one comma
// list) that parseListQuery reads as q: the next page's link is built
// with it. The key is never part of it.
func (q listQuery) encode() string {
	v := url.Values{}
	if q.Function != "" {
		v.Set(paramFunction, q.Function)
	}
	switch {
	case q.None:
		// No status is both Ready and Completed: an empty selection stays
		// empty when read back.
		v.Set(paramState, operations.Ready.String())
		v.Set(paramStatus, operations.Succeeded.String())
	case len(q.Statuses) > 0:
		names := make([]string, len(q.Statuses))
		for i, s := range q.Statuses {
			names[i] = s.String()
		}
		v.Set(paramStatus, strings.Join(names, ","))
	}
	if !q.Since.IsZero() {
		v.Set(paramSince, q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.RunAs != "" {
		v.Set(paramRunAs, q.RunAs)
	}
	if q.Limit > 0 {
		v.Set(paramLimit, strconv.Itoa(q.Limit))
	}
	if q.Cursor != "" {
		v.Set(paramCursor, q.Cursor)
	}
	return v.Encode()
}

// storeQuery is the operations.Query for q as principal p sees it: a
// caller lists only its own records.
func (q listQuery) storeQuery(p principal) (operations.Query, bool) {
	sq := operations.Query{Name: q.Function, Status: q.Statuses, Since: q.Since, Limit: q.Limit, Cursor: q.Cursor}
	runAs := q.RunAs
	if !p.admin {
		if q.RunAs != "" && q.RunAs != p.caller {
			return sq, false // another caller's records: none visible
		}
		runAs = p.caller
		sq.RunAs = &runAs
	} else if runAs != "" {
		sq.RunAs = &runAs
	}
	return sq, !q.None
}

func nonEmpty(s string) string {
	if s == "" {
		return "query"
	}
	return s
}
