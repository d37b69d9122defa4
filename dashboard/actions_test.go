package dashboard_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/operations"
)

// confirmAndPost opens a confirmation page, checks it asks, and sends its
// form as the Confirm button would; it returns the redirect's target.
func confirmAndPost(t *testing.T, b *browser, confirmPath, asks string) string {
	t.Helper()
	resp, page := b.get(confirmPath)
	wantStatus(t, resp, page, 200)
	if !strings.Contains(page, asks) {
		t.Fatalf("the confirmation page does not ask %q:\n%s", asks, page)
	}
	action := regexpFind(t, page, `<form method="post" action="([^"]+)"`)
	form := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	resp, body := b.post(htmlUnescape(action), form)
	wantStatus(t, resp, body, http.StatusSeeOther)
	return resp.Header.Get("Location")
}

func TestRequeueOneThroughTheConfirmation(t *testing.T) {
	e := newEnv(t, nil)
	keep := e.src.poison("orders", `{"n":1}`, "boom")
	id := e.src.poison("orders", `{"n":2}`, "boom")
	_, page := e.browser.get("/poison/ProcessOrder")
	link := "/poison/ProcessOrder/confirm?action=requeue&amp;id=" + id
	if !strings.Contains(page, link) {
		t.Fatalf("the poison page has no Requeue link for %s:\n%s", id, page)
	}
	loc := confirmAndPost(t, e.browser, htmlUnescape(link), "Requeue message "+id+"?")
	src, psn := e.src.broker.Queue("orders"), e.src.broker.Queue("orders-poison")
	if src.Len() != 1 || psn.Len() != 1 {
		t.Fatalf("after requeueing one: source %d, poison %d; want 1 and 1", src.Len(), psn.Len())
	}
	_, page = e.browser.get(loc)
	if !strings.Contains(page, "Requeued 1 message(s)") || strings.Contains(page, `data-id="`+id+`"`) || !strings.Contains(page, `data-id="`+keep+`"`) {
		t.Errorf("after the requeue the page should say so and list only the other message:\n%s", page)
	}
	if !strings.Contains(page, `title="orders-poison">1</a>`) && !strings.Contains(page, "About <b>1</b>") {
		t.Errorf("the count should be fresh after the action:\n%s", page)
	}

	// The same message again: gone.
	resp, body := e.browser.post("/poison/ProcessOrder/requeue", url.Values{"id": {id}, "csrf": {token(t, page)}}, "Accept", "application/json")
	wantError(t, resp, body, 404, "id")
	resp, body = e.browser.post("/poison/ProcessOrder/requeue", url.Values{"csrf": {token(t, page)}}, "Accept", "application/json")
	wantError(t, resp, body, 400, "id")
	resp, body = e.browser.post("/poison/Nobody/requeue", url.Values{"all": {"1"}, "csrf": {token(t, page)}}, "Accept", "application/json")
	wantError(t, resp, body, 404, "function")
}

func TestRequeueAllAndPurge(t *testing.T) {
	e := newEnv(t, nil)
	for range 5 {
		e.src.poison("orders", "x", "")
	}
	loc := confirmAndPost(t, e.browser, "/poison/ProcessOrder/confirm?action=requeue-all", "Requeue every message")
	if n := e.src.broker.Queue("orders").Len(); n != 5 {
		t.Errorf("requeue all moved %d, want 5", n)
	}
	_, page := e.browser.get(loc)
	if !strings.Contains(page, "Requeued 5 message(s)") {
		t.Errorf("requeue all: no flash:\n%s", page)
	}

	for range 3 {
		e.src.poison("orders", "y", "")
	}
	loc = confirmAndPost(t, e.browser, "/poison/ProcessOrder/confirm?action=purge", "Delete every message")
	if n := e.src.broker.Queue("orders-poison").Len(); n != 0 {
		t.Errorf("purge left %d", n)
	}
	if n := e.src.broker.Queue("orders").Len(); n != 5 {
		t.Errorf("purge touched the source queue: %d", n)
	}
	_, page = e.browser.get(loc)
	if !strings.Contains(page, "Deleted 3 message(s)") || !strings.Contains(page, "No poison message is visible") {
		t.Errorf("after purge:\n%s", page)
	}
}

func TestCancelOperations(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	queued, _, err := e.ops.Submit(ctx, clientSubmission("Provision"))
	if err != nil {
		t.Fatal(err)
	}
	running, _, err := e.ops.Submit(ctx, clientSubmission("Provision"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Update(ctx, running.ID, operations.Started(1, e.clock.Now())); err != nil {
		t.Fatal(err)
	}

	_, page := e.browser.get("/operations/" + queued.ID)
	if !strings.Contains(page, "Cancel…") {
		t.Fatalf("a queued operation offers no Cancel:\n%s", page)
	}
	loc := confirmAndPost(t, e.browser, "/operations/"+queued.ID+"/confirm", "Cancel operation "+queued.ID)
	_, page = e.browser.get(loc)
	if !strings.Contains(page, `id="op-status">Canceled<`) || !strings.Contains(page, "Canceled.") {
		t.Errorf("a queued operation should end Canceled:\n%s", page)
	}

	loc = confirmAndPost(t, e.browser, "/operations/"+running.ID+"/confirm", "Cancel operation "+running.ID)
	_, page = e.browser.get(loc)
	if !strings.Contains(page, `id="op-status">Canceling<`) {
		t.Errorf("a running operation should go Canceling:\n%s", page)
	}
	if rec, _ := e.store.Get(ctx, running.ID); rec.Status != operations.Canceling {
		t.Errorf("stored status %v, want Canceling", rec.Status)
	}

	// Completed: nothing to cancel (a second cancel of a canceled one is
	// no error, as in the API).
	resp, body := e.browser.get("/operations/"+queued.ID+"/confirm", "Accept", "application/json")
	wantError(t, resp, body, 409, "id")
	succeeded, _, err := e.ops.Submit(ctx, clientSubmission("ProcessOrder"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Update(ctx, succeeded.ID, operations.Succeed(nil, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	resp, body = e.browser.post("/operations/"+succeeded.ID+"/cancel", url.Values{"csrf": {token(t, page)}}, "Accept", "application/json")
	wantError(t, resp, body, 409, "id")
	resp, body = e.browser.post("/operations/"+operations.NewID()+"/cancel", url.Values{"csrf": {token(t, page)}}, "Accept", "application/json")
	wantError(t, resp, body, 404, "id")
}
