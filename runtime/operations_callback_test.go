package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/webhook"
)

// A completed operation's callback carries Dataverse's payload, signed as
// Standard Webhooks says, and the receiver's side verifies it in one call.
func TestOperationCallbackSigned(t *testing.T) {
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := webhook.ParseSecrets(secret)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		cb  *client.OperationCallback
		id  string
		err error
	}
	received := make(chan got, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb, err := client.ReceiveCallback(r, secret, 0)
		received <- got{cb, client.WebhookID(r), err}
	}))
	defer srv.Close()
	reg := &functions.Registry{}
	functions.Add(reg, "Fails", functions.SubscriptionTrigger("memqueue://ops-callback"),
		func(ctx context.Context, in provisionRequest, _ *triggers.Message) error {
			return functions.Permanent(errors.New("the site is locked"))
		})
	o := startOpsHost(t, reg, opsSetup{cfg: func(c *Config) {
		c.Callbacks.AllowedHosts = []string{"127.0.0.1"}
		c.Callbacks.Secrets = keys
	}})
	resp, b := o.do(t, "POST", o.base+"/Fails", `{"title":"x"}`, "Prefer", `respond-async, callback; url="`+srv.URL+`/done"`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	id := decodeRecord(t, b).ID
	select {
	case g := <-received:
		if g.err != nil {
			t.Fatalf("the callback does not verify: %v", g.err)
		}
		want := client.OperationCallback{ID: id, State: int(operations.Completed), Status: int(operations.Failed),
			StateName: "Completed", StatusName: "Failed", ErrorCode: "PermanentFailure", Location: o.base + "/" + id}
		g.cb.ErrorMessage = ""
		if *g.cb != want {
			t.Fatalf("callback\n %+v\nwant\n %+v", *g.cb, want)
		}
		if g.id == "" {
			t.Error("no webhook-id")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no callback")
	}
	// A tampered body fails verification.
	req := httptest.NewRequest("POST", "/", nil)
	req.Header = webhook.Sign(keys, "msg_1", time.Now(), []byte(`{"a":1}`))
	req.Body = http.NoBody
	if _, err := client.ReceiveCallback(req, secret, 0); !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("tampered callback: %v", err)
	}
}

// An outage of the real table store (Azurite's table service stopped
// mid-run) loses no message and re-runs none; the records converge once
// it is back.
func TestTableStoreOutageMidRun(t *testing.T) {
	q := azuritetest.Shared(t)
	tbl := azuritetest.StartTable(t, azuritetest.Options{Location: t.TempDir()})
	store, err := tablestore.FromConnectionString(tbl.ConnectionString, tablestore.Options{Table: "outage"})
	if err != nil {
		t.Fatal(err)
	}
	reg := &functions.Registry{}
	release := make(chan struct{})
	ran, entered := make(chan string, 64), make(chan struct{}, 64)
	functions.Add(reg, "Work", functions.QueueTrigger("%TestQueue%"),
		func(ctx context.Context, in provisionRequest, _ *triggers.Message) error {
			entered <- struct{}{} // InProgress is written before a function runs
			<-release
			ran <- in.Title
			return nil
		})
	o := startOpsHost(t, reg, opsSetup{store: store, settings: map[string]string{
		"AzureWebJobsStorage": q.ConnectionString, "TestQueue": q.NewQueue(t)}})
	ctx := context.Background()
	const n = 8
	var ids []string
	for i := range n {
		rec, _, err := o.client.Submit(ctx, client.Submission{Function: "Work", Input: json.RawMessage(`{"title":"t` + string(rune('a'+i)) + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	// The functions are running (InProgress written); the store goes away
	// before any finishes.
	for range n {
		<-entered
	}
	for _, id := range ids {
		if rec, err := store.Get(ctx, id); err != nil || rec.Status != operations.InProgress {
			t.Fatalf("before the outage: %v %v", rec, err)
		}
	}
	tbl.Stop()
	close(release)
	seen := map[string]bool{}
	for range n {
		select {
		case s := <-ran:
			if seen[s] {
				t.Fatalf("%s ran twice", s)
			}
			seen[s] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d ran during the outage", len(seen), n)
		}
	}
	tbl.Restart(t)
	for _, id := range ids {
		if rec := o.waitFinal(t, id); rec.Status != operations.Succeeded {
			t.Fatalf("record %s: %s", id, rec.Status)
		}
	}
	o.stop()
	select {
	case s := <-ran:
		t.Fatalf("%s ran again after the outage", s)
	default:
	}
}
