package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/chromedp/chromedp"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/dashboard"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/httpapi"
	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	_ "github.com/jobhost/jobhost/triggers/memqueue" // the operations' function queue
)

// source is a status.Source assembled from real drivers: its functions'
// poison administration is opened by open.
type source struct {
	mu    sync.Mutex
	funcs []status.Function
	ring  *status.Ring
	open  func(ctx context.Context, f status.Function) (triggers.PoisonAdmin, error)
}

func (s *source) Functions() []status.Function {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.funcs)
}

func (s *source) Invocations(f status.Filter) []status.Invocation { return s.ring.List(f) }

func (s *source) OpenPoison(ctx context.Context, function string) (triggers.PoisonAdmin, error) {
	for _, f := range s.Functions() {
		if f.Name == function && f.PoisonAdmin && s.open != nil {
			return s.open(ctx, f)
		}
	}
	return nil, errors.New("no poison administration for " + function)
}

// serve serves a dashboard on a loopback port.
func serve(t *testing.T, o dashboard.Options) string {
	t.Helper()
	h, err := dashboard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// peekTexts returns the texts of the visible messages of a queue.
func peekTexts(ctx context.Context, q *azqueue.QueueClient) (map[string]string, error) {
	n := int32(32)
	resp, err := q.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: &n})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range resp.Messages {
		out[*m.MessageID] = *m.MessageText
	}
	return out, nil
}

// The operator opens the poison page of a Storage Queue function on
// Azurite, clicks Requeue on one message, confirms, and the message leaves
// the poison queue and is back in the source queue, as stored.
func TestRequeueAPoisonMessageOnAzurite(t *testing.T) {
	srv := azuritetest.Shared(t)
	svc := srv.ServiceClient(t)
	queue := srv.NewQueue(t)
	ctx := t.Context()
	psn := svc.NewQueueClient(azurequeue.PoisonQueueName(queue))
	if _, err := psn.Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// As the host stores them: JSON, base64-encoded (messageEncoding base64).
	texts := map[string]string{}
	for _, site := range []string{"hr", "finance"} {
		text := base64.StdEncoding.EncodeToString([]byte(`{"siteUrl":"https://contoso.example/sites/` + site + `"}`))
		if _, err := psn.EnqueueMessage(ctx, text, nil); err != nil {
			t.Fatal(err)
		}
		texts[site] = text
	}
	stored, err := peekTexts(ctx, psn)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for mid, text := range stored {
		if text == texts["finance"] {
			id = mid
		}
	}
	src := &source{ring: status.NewRing(10), funcs: []status.Function{{
		Name: "ProcessSiteModifyRequest", Queue: queue, Broker: "azurequeue", Poison: azurequeue.PoisonQueueName(queue),
		PoisonAdmin: true, State: status.Listening, Concurrency: 24,
	}}, open: func(_ context.Context, f status.Function) (triggers.PoisonAdmin, error) {
		return azurequeue.OpenPoison(svc, f.Queue)
	}}
	base := serve(t, dashboard.Options{Source: src})

	tab := newTab(t)
	msg := `li.message[data-id="` + id + `"]`
	run(t, tab, "opening the poison page",
		chromedp.Navigate(base+"/poison/ProcessSiteModifyRequest"),
		chromedp.WaitVisible(chromedp.CSS(msg)))
	if body := text(t, tab, msg+" pre.body"); !strings.Contains(body, "https://contoso.example/sites/finance") {
		t.Errorf("the message body is not shown decoded: %q", body)
	}
	run(t, tab, "clicking Requeue", chromedp.Click(chromedp.CSS(msg+" a.button")),
		chromedp.WaitVisible(chromedp.CSS(`section.confirm button[type="submit"]`)))
	if q := text(t, tab, "section.confirm h1"); q != "Requeue message "+id+"?" {
		t.Errorf("the confirmation asks %q", q)
	}
	// Nothing moved before the confirmation.
	if stored, _ := peekTexts(ctx, psn); len(stored) != 2 {
		t.Fatalf("before confirming, the poison queue holds %d messages, want 2", len(stored))
	}
	run(t, tab, "confirming", chromedp.Click(chromedp.CSS(`section.confirm button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("p.flash")))
	if f := text(t, tab, "p.flash"); !strings.Contains(f, "Requeued 1 message") {
		t.Errorf("flash %q", f)
	}
	pollJS(t, tab, "the message to leave the list", `document.querySelector('`+msg+`') === null && document.querySelectorAll('li.message').length === 1`)

	waitFor(t, "the message to be back in the source queue and out of the poison queue", func() (bool, error) {
		back, err := peekTexts(ctx, svc.NewQueueClient(queue))
		if err != nil {
			return false, err
		}
		left, err := peekTexts(ctx, psn)
		if err != nil {
			return false, err
		}
		_, stillPoisoned := left[id]
		return len(back) == 1 && slices.Contains(mapValues(back), texts["finance"]) && !stillPoisoned && len(left) == 1, nil
	})
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// The operator cancels a running and a queued operation kept in Table
// Storage on Azurite: the running one shows Canceling, then Canceled once
// the host ends it (the page refreshes itself); the queued one Canceled.
func TestCancelOperationsInTableStorage(t *testing.T) {
	srv := azuritetest.SharedTable(t)
	store, err := tablestore.FromConnectionString(srv.ConnectionString, tablestore.Options{Table: srv.NewTableName(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c, err := client.New(client.Options{Store: store, Functions: []client.Function{{Name: "Provision", Queue: "memqueue://e2e-provision"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	submit := func() *operations.Record {
		rec, _, err := c.Submit(ctx, client.Submission{Function: "Provision", Input: []byte(`{"site":"hr"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	running, queued := submit(), submit()
	for _, change := range []operations.Change{operations.Started(1, time.Now()), operations.SetProgress([]byte(`{"percent":40}`))} {
		if _, err := store.Update(ctx, running.ID, change); err != nil {
			t.Fatal(err)
		}
	}
	src := &source{ring: status.NewRing(10), funcs: []status.Function{{Name: "Provision", Queue: "e2e-provision", Broker: "memqueue", State: status.Listening}}}
	base := serve(t, dashboard.Options{Source: src, Operations: c, Counter: store, RefreshInterval: 250 * time.Millisecond})

	tab := newTab(t)
	row := `tr[data-id="` + running.ID + `"] a`
	run(t, tab, "opening the operations", chromedp.Navigate(base+"/operations?function=Provision"),
		chromedp.WaitVisible(chromedp.CSS(row)))
	run(t, tab, "opening the running one", chromedp.Click(chromedp.CSS(row)), chromedp.WaitVisible(chromedp.CSS("#op-status")))
	if s := text(t, tab, "#op-status"); s != "InProgress" {
		t.Fatalf("status %q, want InProgress", s)
	}
	run(t, tab, "clicking Cancel", chromedp.Click(chromedp.CSS("p.actions a.danger")),
		chromedp.WaitVisible(chromedp.CSS(`section.confirm button[type="submit"]`)))
	run(t, tab, "confirming", chromedp.Click(chromedp.CSS(`section.confirm button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("p.flash")))
	if s := text(t, tab, "#op-status"); s != "Canceling" {
		t.Errorf("after cancel: %q, want Canceling", s)
	}
	if rec, err := store.Get(ctx, running.ID); err != nil || rec.Status != operations.Canceling {
		t.Fatalf("stored: %v %v, want Canceling", rec, err)
	}
	// The host stops the function and ends the record; the open page
	// follows without a reload.
	if _, err := store.Update(ctx, running.ID, operations.EndCanceled(time.Now())); err != nil {
		t.Fatal(err)
	}
	pollJS(t, tab, "the page to show Canceled", `document.getElementById('op-status').textContent === 'Canceled' && !document.querySelector('p.actions a.danger')`)

	run(t, tab, "cancelling the queued one", chromedp.Navigate(base+"/operations/"+queued.ID),
		chromedp.Click(chromedp.CSS("p.actions a.danger")),
		chromedp.WaitVisible(chromedp.CSS(`section.confirm button[type="submit"]`)),
		chromedp.Click(chromedp.CSS(`section.confirm button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("p.flash")))
	if s := text(t, tab, "#op-status"); s != "Canceled" {
		t.Errorf("a queued operation after cancel: %q, want Canceled", s)
	}
}

// With a key configured, a page opened without it is refused (401, the
// login form, nothing of the host), a wrong key too, and the admin key
// opens it with a session cookie that scripts cannot read.
func TestAuthenticationInTheBrowser(t *testing.T) {
	const key = "e2e-admin-key-5f0c2a"
	src := &source{ring: status.NewRing(10), funcs: []status.Function{{Name: "ProcessOrder", Queue: "orders", Broker: "memqueue", State: status.Listening, Concurrency: 4}}}
	base := serve(t, dashboard.Options{Source: src, Keys: httpapi.Keys{Admin: []string{key}}})

	tab := newTab(t)
	resp := value(t, tab, "opening the overview", chromedp.NavigateResponse(base+"/"))
	if resp.Status != http.StatusUnauthorized {
		t.Errorf("without the key: status %d, want 401", resp.Status)
	}
	run(t, tab, "the login form", chromedp.WaitVisible(chromedp.CSS(`input[name="key"]`)))
	if body := text(t, tab, "main"); strings.Contains(body, "ProcessOrder") {
		t.Errorf("the refused page shows the host: %q", body)
	}
	run(t, tab, "a wrong key", chromedp.SendKeys(chromedp.CSS(`input[name="key"]`), "not-the-key"),
		chromedp.Submit(chromedp.CSS(`input[name="key"]`)), chromedp.WaitVisible(chromedp.CSS(`p.flash.bad`)))
	if msg := text(t, tab, "p.flash.bad"); !strings.Contains(msg, "not valid") {
		t.Errorf("wrong key: %q", msg)
	}
	run(t, tab, "the admin key", chromedp.SendKeys(chromedp.CSS(`input[name="key"]`), key),
		chromedp.Submit(chromedp.CSS(`input[name="key"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-function="ProcessOrder"]`)))
	if cookies := value(t, tab, "document.cookie", chromedp.Evaluate[string]("document.cookie")); cookies != "" {
		t.Errorf("scripts can read cookies %q; the session cookie must be HttpOnly", cookies)
	}
	resp = value(t, tab, "another page in the session", chromedp.NavigateResponse(base+"/invocations"))
	if resp.Status != http.StatusOK {
		t.Errorf("signed in: status %d, want 200", resp.Status)
	}
	run(t, tab, "logging out", chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS(`input[name="key"]`)))
	resp = value(t, tab, "after logging out", chromedp.NavigateResponse(base+"/"))
	if resp.Status != http.StatusUnauthorized {
		t.Errorf("after logout: status %d, want 401", resp.Status)
	}
}
