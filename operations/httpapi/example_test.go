package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/httpapi"
)

// A web app mounts the operations API in its own mux, next to its own
// routes, with keys from its settings.
func Example() {
	var ops client.Operations = exampleOps{} // the app's client.Operations

	api, err := httpapi.New(httpapi.Options{
		Operations: ops,
		Keys:       httpapi.Keys{Admin: []string{"admin-key"}, Callers: map[string]string{"shop-key": "shop"}},
		Prefix:     "/api/operations",
		CheckCallback: func(u string) error {
			if !strings.HasPrefix(u, "https://hooks.example.com/") {
				return fmt.Errorf("only https://hooks.example.com/ may be called back")
			}
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/operations", api)  // the listing
	mux.Handle("/api/operations/", api) // everything under it
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

	srv := httptest.NewServer(mux)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/api/operations/resize", strings.NewReader(`{"width":640}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-functions-key", "shop-key")
	req.Header.Set("Prefer", "respond-async")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	res.Body.Close()
	fmt.Println(res.StatusCode, res.Header.Get("Preference-Applied"), strings.TrimPrefix(res.Header.Get("Location"), srv.URL))
	// Output: 202 respond-async /api/operations/op-1
}

// exampleOps accepts every submission as operation op-1.
type exampleOps struct{ client.Operations }

func (exampleOps) Submit(ctx context.Context, s client.Submission) (*operations.Record, bool, error) {
	now := time.Now()
	return &operations.Record{ID: "op-1", Name: s.Function, RunAs: s.RunAs, CreatedOn: now, LastUpdated: now}, true, nil
}
