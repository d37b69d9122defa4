package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// SiteRequest is the argument of the worker's function; the web app shares
// the type (and the Ref) with it.
type SiteRequest struct {
	Site   string `json:"site"`
	Region string `json:"region"`
}

// The worker's package registers the function and keeps its Ref. (A
// program with its own registry uses functions.Add; one that shares only
// the type, functions.NewRef.)
var exampleRegistry = &functions.Registry{}

var ProcessSite = functions.Add(exampleRegistry, "ProcessSite", functions.SubscriptionTrigger("memqueue://sites"),
	func(ctx context.Context, req SiteRequest, msg *triggers.Message) error { return nil })

// A web app enqueues for the worker without running a host: the handler
// decodes the request and calls client.Enqueue with the function's Ref, so
// only a SiteRequest compiles. (Built with runtime.ClientOptions the client
// uses host.json and the app settings exactly as the host does; here the
// options are written out.)
func Example_webApp() {
	def := exampleRegistry.Functions()[0]
	c, err := client.New(client.Options{Functions: []client.Function{{Name: def.Name, Queue: def.Trigger.Queue, Validate: def.Validate}}})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req SiteRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		id, err := client.Enqueue(r.Context(), c, ProcessSite, req)
		// client.Enqueue(r.Context(), c, ProcessSite, "text") does not compile.
		switch {
		case client.Unsendable(err):
			http.Error(w, err.Error(), http.StatusBadRequest)
		case err != nil:
			http.Error(w, "try again later", http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, "queued %s", id)
		}
	})

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("POST", "/sites", strings.NewReader(`{"site":"contoso","region":"eu"}`)))
	fmt.Println(rec.Code, rec.Body.String() != "")

	// The worker's queue now holds the message as the function binds it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	msgs, _ := memqueue.New(memqueue.Default.Queue("sites"), nil).Receive(ctx, 1, time.Minute)
	fmt.Println(string(msgs[0].Body))
	// Output:
	// 202 true
	// {"site":"contoso","region":"eu"}
}

// Queue sends values of one type to a queue named by a setting, for a
// caller that shares only the type with the function.
func ExampleNewQueue() {
	c, _ := client.New(client.Options{Lookup: func(name string) (string, bool) {
		return "memqueue://reports", name == "ReportsQueue"
	}})
	defer c.Close()
	reports := client.NewQueue[SiteRequest](c, "%ReportsQueue%")
	ids, err := reports.SendBatch(context.Background(), []SiteRequest{{Site: "a"}, {Site: "b"}})
	fmt.Println(len(ids), err)
	_, err = client.NewQueue[string](c, "Not A Queue!").Send(context.Background(), "x")
	fmt.Println(err != nil, errors.Is(err, client.ErrNotEncodable))
	// Output:
	// 2 <nil>
	// true false
}
