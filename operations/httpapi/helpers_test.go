package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Keys the tests use; none may appear in an answer or a log.
const (
	adminKey = "admin-key-0123456789"
	keyA     = "caller-a-key-abcdef"
	keyB     = "caller-b-key-ghijkl"
)

var secrets = []string{adminKey, keyA, keyB}

// env is a handler served over real HTTP, with a fake behind it.
type env struct {
	t    *testing.T
	srv  *httptest.Server
	fake *fakeOps
	logs *observer.ObservedLogs
}

// newEnv serves the API with admin, "a" and "b" keys unless mod changes
// the options.
func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	e := &env{t: t, fake: newFake("resize", "report"), logs: logs}
	o := Options{
		Operations: e.fake,
		Keys:       Keys{Admin: []string{adminKey}, Callers: map[string]string{keyA: "a", keyB: "b"}},
		Logger:     zap.New(core),
	}
	if mod != nil {
		mod(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.Close()
		for _, entry := range logs.All() {
			line := fmt.Sprint(entry.Message, entry.ContextMap())
			for _, s := range secrets {
				if strings.Contains(line, s) {
					t.Errorf("a key is in the log: %s", line)
				}
			}
		}
	})
	return e
}

// resp is an answer, read.
type resp struct {
	status int
	header http.Header
	body   []byte
	obj    map[string]any
}

// str returns a top-level string member of a JSON answer.
func (r *resp) str(name string) string {
	s, _ := r.obj[name].(string)
	return s
}

// do sends a request to path (relative to the server) with headers given
// as name, value pairs; a body gets Content-Type application/json unless
// the pairs set it ("" removes it).
func (e *env) do(method, path, body string, headers ...string) *resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Content-Type" {
			req.Header.Del("Content-Type")
		}
		if headers[i+1] != "" {
			req.Header.Add(headers[i], headers[i+1])
		}
	}
	return e.send(req)
}

// send sends req and reads the answer.
func (e *env) send(req *http.Request) *resp {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &resp{status: res.StatusCode, header: res.Header, body: b}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.obj); err != nil {
			e.t.Fatalf("%s %s: the answer is not a JSON object: %v\n%s", req.Method, req.URL.Path, err, b)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			e.t.Errorf("%s %s: Content-Type %q", req.Method, req.URL.Path, ct)
		}
	}
	for _, s := range secrets {
		if strings.Contains(string(b), s) || strings.Contains(fmt.Sprint(res.Header), s) {
			e.t.Errorf("%s %s: a key is in the answer: %s", req.Method, req.URL.Path, b)
		}
	}
	return r
}

// admin sends a request with the admin key.
func (e *env) admin(method, path, body string, headers ...string) *resp {
	e.t.Helper()
	return e.do(method, path, body, append([]string{KeyHeader, adminKey}, headers...)...)
}

// wantStatus fails unless r has the status.
func wantStatus(t *testing.T, r *resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

// wantError fails unless r is an error in the API's shape, with the
// status, code and field.
func wantError(t *testing.T, r *resp, status int, code, field string) {
	t.Helper()
	wantStatus(t, r, status)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if body.Error.Code != code || body.Error.Field != field || body.Error.Message == "" {
		t.Fatalf("error %+v, want code %s field %q", body.Error, code, field)
	}
	if len(r.obj) != 1 {
		t.Fatalf("error body has more than the error member: %s", r.body)
	}
}

// message returns an error answer's message.
func (r *resp) message() string {
	e, _ := r.obj["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// submit submits input to function as the admin and returns the id.
func (e *env) submit(function, input string, headers ...string) string {
	e.t.Helper()
	r := e.admin("POST", "/api/operations/"+function, input, headers...)
	wantStatus(e.t, r, http.StatusAccepted)
	return r.str("id")
}
