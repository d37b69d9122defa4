package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/dashboard"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// EnvScreenshots names the directory TestScreenshots writes the
// dashboard's screenshots to (docs/img keeps them).
const EnvScreenshots = "JOBHOST_SCREENSHOTS"

// TestScreenshots renders a busy host's dashboard and saves its pages as
// PNG, in light and dark mode. It runs only when JOBHOST_SCREENSHOTS names
// a directory.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		t.Skip("set " + EnvScreenshots + "=dir to write the dashboard's screenshots")
	}
	if !filepath.IsAbs(dir) {
		t.Fatalf("%s must be an absolute path (the tests run in the module root), got %q", EnvScreenshots, dir)
	}
	ctx := t.Context()

	// A Storage Queue function with poison messages on Azurite.
	srv := azuritetest.Shared(t)
	svc := srv.ServiceClient(t)
	queue := "site-modify-requests" // a readable name for the pictures
	if _, err := svc.CreateQueue(ctx, queue, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = svc.DeleteQueue(context.Background(), queue, nil)
		_, _ = svc.DeleteQueue(context.Background(), azurequeue.PoisonQueueName(queue), nil)
	})
	psn := svc.NewQueueClient(azurequeue.PoisonQueueName(queue))
	if _, err := psn.Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for i, site := range []string{"hr", "finance", "legal", "marketing"} {
		body, _ := json.Marshal(map[string]any{"siteUrl": "https://contoso.sharepoint.com/sites/" + site, "requestorName": []string{"Ana", "Ben", "Chloé", "Dev"}[i], "workMs": 500})
		if _, err := psn.EnqueueMessage(ctx, base64.StdEncoding.EncodeToString(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	broker := memqueue.NewBroker()
	for i := range 3 {
		broker.Queue("orders-poison").Send([]byte(fmt.Sprintf(`{"orderId":"SO-%d","lines":[]}`, 4100+i)), map[string]string{"x-jobhost-reason": "order has no lines"})
	}
	now := time.Now()
	src := &source{ring: status.NewRing(100), funcs: []status.Function{
		{Name: "ProcessSiteModifyRequest", Queue: queue, Broker: "azurequeue", Poison: azurequeue.PoisonQueueName(queue), PoisonAdmin: true,
			State: status.Listening, InFlight: 3, Concurrency: 24, Received: 1520, Succeeded: 1484, Failed: 31, Poisoned: 4,
			LastError: "validation: siteUrl must be an https URL", LastErrorAt: now.Add(-3 * time.Minute), LastPoll: now, Depth: 12, DepthAt: now},
		{Name: "SplitOrder", Queue: "orders", Broker: "memqueue", Poison: "orders-poison", PoisonAdmin: true,
			State: status.Listening, InFlight: 9, Concurrency: 16, Received: 88210, Succeeded: 88175, Failed: 12, Poisoned: 3,
			LastError: "order has no lines", LastErrorAt: now.Add(-41 * time.Minute), LastPoll: now, Depth: 240, DepthAt: now},
		{Name: "ProvisionSite", Queue: "sites", Broker: "memqueue", Poison: "sites-poison", PoisonAdmin: true,
			State: status.Listening, InFlight: 1, Concurrency: 4, Received: 57, Succeeded: 52, Failed: 1, Cancelled: 2, LastPoll: now, DepthAt: now},
		{Name: "SyncInventory", Queue: "nats://inventory?stream=INVENTORY", Broker: "jetstream", Poison: "inventory-poison",
			State: status.Failing, Concurrency: 8, LastError: "nats: no servers available for connection", LastErrorAt: now.Add(-20 * time.Second), Depth: -1},
		{Name: "NightlyReport", Queue: "reports", Broker: "postgres", State: status.Disabled, Concurrency: 1, Depth: 0, DepthAt: now},
	}, open: func(ctx context.Context, f status.Function) (triggers.PoisonAdmin, error) {
		if f.Broker == "azurequeue" {
			return azurequeue.OpenPoison(svc, f.Queue)
		}
		return broker.OpenPoisonURL(ctx, &url.URL{Scheme: memqueue.Scheme, Host: f.Queue}, triggers.OpenOptions{})
	}}
	outcomes := []string{"succeeded", "succeeded", "succeeded", "failed", "succeeded", "poisoned", "succeeded", "cancelled"}
	for i := range 40 {
		fn := []string{"ProcessSiteModifyRequest", "SplitOrder", "ProvisionSite"}[i%3]
		inv := status.Invocation{ID: fmt.Sprintf("inv-%04d", i), Function: fn, MessageID: fmt.Sprintf("%08x-5c1e-4b7a-9d2f-%012x", 0x3f2a0000+i, 0xa1b2c3d4+i),
			Outcome: outcomes[i%len(outcomes)], TraceID: fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", i), DequeueCount: int64(1 + i%3),
			Start: now.Add(-time.Duration(40-i) * 7 * time.Second), Duration: time.Duration(20+i*37%900) * time.Millisecond}
		switch inv.Outcome {
		case "failed":
			inv.Error = "POST https://contoso.sharepoint.com/_api/web: 503 Service Unavailable"
		case "poisoned":
			inv.Error = "validation: siteUrl must be an https URL"
		}
		src.ring.Add(inv)
	}

	store := memstore.New(memstore.Options{})
	c, err := client.New(client.Options{Store: store, Functions: []client.Function{{Name: "ProvisionSite", Queue: "memqueue://screenshot-sites"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var running string
	for i := range 24 {
		in, _ := json.Marshal(map[string]string{"site": fmt.Sprintf("team-%02d", i)})
		rec, _, err := c.Submit(ctx, client.Submission{Function: "ProvisionSite", Input: in})
		if err != nil {
			t.Fatal(err)
		}
		var changes []operations.Change
		switch i % 6 {
		case 0, 1, 2:
			out, _ := json.Marshal(map[string]string{"url": "https://contoso.sharepoint.com/sites/team-" + fmt.Sprint(i)})
			changes = []operations.Change{operations.Started(1, now), operations.Succeed(out, now)}
		case 3:
			changes = []operations.Change{operations.Started(1, now), operations.SetProgress([]byte(`{"percent":60,"step":"applying the site template"}`))}
			running = rec.ID
		case 4:
			changes = []operations.Change{operations.Started(3, now), operations.Fail("FunctionFailed", "the site collection quota is exhausted", now)}
		}
		for _, ch := range changes {
			if _, err := store.Update(ctx, rec.ID, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := serve(t, dashboard.Options{Source: src, Operations: c, Counter: store, RefreshInterval: 400 * time.Millisecond})

	tab := newTab(t)
	run(t, tab, "viewport", chromedp.EmulateViewport(1280, 800))
	run(t, tab, "overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#overview table")))
	// Invocations finish; the live refresh shows the rates.
	src.mu.Lock()
	src.funcs[0].Succeeded += 23
	src.funcs[1].Succeeded += 640
	src.funcs[2].Succeeded += 2
	src.mu.Unlock()
	pollJS(t, tab, "the rates", `[...document.querySelectorAll('td.rate')].some(td => td.textContent.trim() !== '—' && td.textContent.trim() !== '0/s')`)
	shoot := func(name string) {
		t.Helper()
		png := value(t, tab, "screenshot "+name, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(dir, "dashboard-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shoot("overview")
	run(t, tab, "poison", chromedp.Navigate(base+"/poison/ProcessSiteModifyRequest"), chromedp.WaitVisible(chromedp.CSS("li.message")))
	shoot("poison")
	run(t, tab, "invocations", chromedp.Navigate(base+"/invocations?limit=15"), chromedp.WaitVisible(chromedp.CSS("#invocations table")))
	shoot("invocations")
	run(t, tab, "operations", chromedp.Navigate(base+"/operations?limit=12"), chromedp.WaitVisible(chromedp.CSS("#operations table")))
	shoot("operations")
	run(t, tab, "operation", chromedp.Navigate(base+"/operations/"+running), chromedp.WaitVisible(chromedp.CSS("#op-status")))
	shoot("operation")
	run(t, tab, "dark mode", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	}), chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#overview table")))
	shoot("overview-dark")
}
