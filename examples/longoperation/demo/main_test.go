package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/webhook"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// The demo against Azurite, records in Table Storage: the bot submits,
// polls, waits, cancels, and receives the signed callbacks of the
// operations it gave a callback URL; run fails if any step does not go as
// the story says.
func TestDemo(t *testing.T) {
	q := azuritetest.Shared(t)
	tbl := azuritetest.SharedTable(t)
	store, err := tablestore.FromConnectionString(tbl.ConnectionString, tablestore.Options{Table: tbl.NewTableName(t)})
	if err != nil {
		t.Fatal(err)
	}
	var out, logs bytes.Buffer
	env := []string{"AzureWebJobsStorage=" + q.ConnectionString, "LongOperationQueue=" + azuritetest.UniqueQueueName(t)}
	o := options{hostJSON: "../host.json", listen: "127.0.0.1:0", store: store, pollEvery: 50 * time.Millisecond}
	if err := run(context.Background(), env, o, &out, &logs); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), logs.String())
	}
	got := out.String()
	for _, want := range []string{"bot ← 202 Accepted WaitingForResources, Location: http://127.0.0.1:",
		`progress {"step":4,"of":4}, output {"operationId":"`, "Succeeded\n",
		"bot ← 200 OK Succeeded", `output {"operationId":"`, `"steps":2}`,
		"bot ← 200 OK Failed", "Permanent", "steps and stepMs must not be negative",
		"bot ← 202 Accepted Canceling", "GET  → Canceled", "Canceled\n",
		"a forged, unsigned callback → 401 Unauthorized"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "callback, signature verified"); n != 2 {
		t.Errorf("%d verified callbacks, want 2:\n%s", n, got)
	}
}

// The callback endpoint takes a notice signed with its secret, once per
// webhook-id, and refuses one signed with another secret or unsigned.
func TestCallbackVerifies(t *testing.T) {
	mine, _ := webhook.NewSecret()
	other, _ := webhook.NewSecret()
	secrets, _ := webhook.ParseSecrets(mine)
	otherSecrets, _ := webhook.ParseSecrets(other)
	b := &bot{secrets: secrets, notices: make(chan runtime.OperationCallback, 4), seen: map[string]bool{}}
	body := []byte(`{"backgroundOperationId":"op-1","backgroundOperationStatusName":"Succeeded"}`)
	post := func(signWith []webhook.Secret, id string) int {
		r := httptest.NewRequest(http.MethodPost, "/callbacks", bytes.NewReader(body))
		if signWith != nil {
			for k, v := range webhook.Sign(signWith, id, time.Now(), body) {
				r.Header[k] = v
			}
		}
		w := httptest.NewRecorder()
		b.callback(w, r)
		return w.Code
	}
	if code := post(otherSecrets, "msg_1"); code != http.StatusUnauthorized {
		t.Errorf("signed with another secret: %d, want 401", code)
	}
	if code := post(nil, ""); code != http.StatusUnauthorized {
		t.Errorf("unsigned: %d, want 401", code)
	}
	if len(b.notices) != 0 {
		t.Fatal("a refused notice was delivered")
	}
	for range 2 { // the same notice twice: delivered once
		if code := post(secrets, "msg_2"); code != http.StatusNoContent {
			t.Errorf("signed: %d, want 204", code)
		}
	}
	if len(b.notices) != 1 {
		t.Fatalf("%d notices delivered, want 1", len(b.notices))
	}
	if n := <-b.notices; n.ID != "op-1" || n.StatusName != "Succeeded" {
		t.Errorf("notice %+v", n)
	}
}
