package httpapi

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
)

func TestList(t *testing.T) {
	e := newEnv(t, nil)
	var resize []string
	for i := range 5 {
		id := e.submit("resize", `{"i":1}`)
		resize = append(resize, id)
		switch i {
		case 1:
			e.fake.start(id)
		case 2:
			e.fake.succeed(id, `"big output"`)
		case 3:
			e.fake.fail(id)
		}
	}
	report := e.submit("report", `{}`)
	all := append(slices.Clone(resize), report)
	slices.Sort(all)

	list := func(query string, headers ...string) ([]string, *resp) {
		t.Helper()
		r := e.admin("GET", "/api/operations"+query, "", headers...)
		wantStatus(t, r, 200)
		var ids []string
		for _, rec := range r.obj["records"].([]any) {
			m := rec.(map[string]any)
			if _, ok := m["input"]; ok {
				t.Error("a listed record carries its input")
			}
			if m["location"] != e.srv.URL+"/api/operations/"+m["id"].(string) {
				t.Errorf("location %v", m["location"])
			}
			ids = append(ids, m["id"].(string))
		}
		return ids, r
	}
	if got, r := list(""); !slices.Equal(got, all) || r.str("next") != "" || r.obj["nextLink"] != nil {
		t.Errorf("all: %v %s", got, r.body)
	}
	if got, _ := list("?function=report"); !slices.Equal(got, []string{report}) {
		t.Errorf("report: %v", got)
	}
	if got, _ := list("?function=resize&status=Succeeded,31"); !slices.Equal(got, []string{resize[2], resize[3]}) {
		t.Errorf("succeeded or failed: %v", got)
	}
	if got, _ := list("?status=inprogress&status=30"); !slices.Equal(got, []string{resize[1], resize[2]}) {
		t.Errorf("repeated status: %v", got)
	}
	if got, _ := list("?state=Completed"); !slices.Equal(got, []string{resize[2], resize[3]}) {
		t.Errorf("completed: %v", got)
	}
	if got, _ := list("?state=Ready&function=resize"); !slices.Equal(got, []string{resize[0], resize[4]}) {
		t.Errorf("ready: %v", got)
	}
	if got, _ := list("?state=Completed&status=Failed,InProgress"); !slices.Equal(got, []string{resize[3]}) {
		t.Errorf("state and status: %v", got)
	}
	n := len(e.fake.listed)
	if got, _ := list("?state=Ready&status=Succeeded"); len(got) != 0 || len(e.fake.listed) != n {
		t.Errorf("nothing selected: %v (listed: %d)", got, len(e.fake.listed)-n)
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))
	if got, _ := list("?since=" + future); len(got) != 0 {
		t.Errorf("since the future: %v", got)
	}
	// '+' left unescaped in the offset reads as a space; it is taken back.
	past := time.Now().Add(-time.Hour).In(time.FixedZone("", 2*3600)).Format(time.RFC3339)
	if got, _ := list("?since=" + past); len(got) != len(all) {
		t.Errorf("since an hour ago (%s): %v", past, got)
	}

	// Pages, following nextLink, which never carries the key.
	var paged []string
	next := "/api/operations?limit=2&function=resize&code=" + url.QueryEscape(adminKey)
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		got, r := list(strings.TrimPrefix(next, "/api/operations"))
		paged = append(paged, got...)
		next = ""
		if link, _ := r.obj["nextLink"].(string); link != "" {
			if r.str("next") == "" || !strings.HasPrefix(link, e.srv.URL+"/api/operations?") || strings.Contains(link, "code=") {
				t.Fatalf("nextLink %q next %q", link, r.str("next"))
			}
			u, _ := url.Parse(link)
			if u.Query().Get("function") != "resize" || u.Query().Get("limit") != "2" || u.Query().Get("cursor") != r.str("next") {
				t.Errorf("nextLink %q", link)
			}
			next = "/api/operations?" + u.RawQuery
		}
	}
	sortedResize := slices.Clone(resize)
	slices.Sort(sortedResize)
	if !slices.Equal(paged, sortedResize) {
		t.Errorf("paged %v, want %v", paged, sortedResize)
	}
	if q := e.fake.listed[len(e.fake.listed)-1]; q.Limit != 2 || q.Name != "resize" || q.RunAs != nil {
		t.Errorf("last query %+v", q)
	}

	for query, param := range map[string]string{
		"?status=Running":                        "status",
		"?state=Done":                            "state",
		"?since=yesterday":                       "since",
		"?limit=0":                               "limit",
		"?limit=1001":                            "limit",
		"?limit=ten":                             "limit",
		"?function=a&function=b":                 "function",
		"?sort=id":                               "sort",
		"?%zz=1":                                 "%zz",
		"?cursor=" + "%":                         "cursor",
		"?function=" + strings.Repeat("f", 5000): "function",
	} {
		r := e.admin("GET", "/api/operations"+query, "")
		wantError(t, r, 400, "BadRequest", param)
	}
}

func TestParseListQuery(t *testing.T) {
	since := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for raw, want := range map[string]listQuery{
		"":                       {},
		"code=secret&&":          {},
		"function=resize&limit=": {Function: "resize"},
		"status=0,%2020&status=Canceled": {Statuses: []operations.Status{
			operations.WaitingForResources, operations.InProgress, operations.Canceled}},
		"state=locked":                          {Statuses: []operations.Status{operations.InProgress, operations.Canceling}},
		"state=3&status=30,0":                   {Statuses: []operations.Status{operations.Succeeded}},
		"state=0&status=30":                     {Statuses: []operations.Status{}, None: true},
		"status=,":                              {},
		"since=2026-03-01T12:00:00+02:00":       {Since: since},
		"since=2026-03-01T12:00:00%2B02:00":     {Since: since},
		"since=2026-03-01T10:00:00Z&limit=1000": {Since: since, Limit: 1000},
		"runAs=a&cursor=abc%2Fdef":              {RunAs: "a", Cursor: "abc/def"},
	} {
		got, err := parseListQuery(raw)
		if err != nil {
			t.Errorf("%q: %v", raw, err)
			continue
		}
		if !equalQuery(got, want) {
			t.Errorf("%q: %+v, want %+v", raw, got, want)
		}
		back, err := parseListQuery(got.encode())
		if err != nil || !equalQuery(back, got) {
			t.Errorf("%q: encoded as %q, read back as %+v (%v)", raw, got.encode(), back, err)
		}
	}
}

func equalQuery(a, b listQuery) bool {
	return a.Function == b.Function && slices.Equal(a.Statuses, b.Statuses) && (a.Statuses == nil) == (b.Statuses == nil) &&
		a.None == b.None && a.Since.Equal(b.Since) && a.RunAs == b.RunAs && a.Limit == b.Limit && a.Cursor == b.Cursor
}

// A cursor the store did not make is the caller's mistake: 400 naming
// cursor, not a 503 that says to try again.
func TestListInvalidCursor(t *testing.T) {
	e := newEnv(t, nil)
	r := e.admin("GET", "/api/operations?cursor=bogus", "")
	wantStatus(t, r, 400)
	if !strings.Contains(string(r.body), `"field":"cursor"`) {
		t.Fatalf("body %s", r.body)
	}
}
