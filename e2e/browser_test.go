package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// EnvRequireBrowser names the variable that, set to 1, turns a missing
// Chromium into a failure instead of a skip.
const EnvRequireBrowser = "JOBHOST_REQUIRE_BROWSER"

func TestMain(m *testing.M) {
	// azuritetest finds Azurite in node_modules next to the go.mod above
	// the working directory: the main module's, one level up.
	if err := os.Chdir(".."); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	azuritetest.Main(m)
}

// chromiumPath finds the browser.
func chromiumPath() (string, error) {
	if p := os.Getenv("JOBHOST_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no chromium, chromium-browser or google-chrome on PATH (set JOBHOST_CHROMIUM)")
}

var loudOnce sync.Once

// newTab starts a headless Chromium with a fresh profile and returns its
// tab's context; the browser ends with the test.
func newTab(t *testing.T) context.Context {
	t.Helper()
	path, err := chromiumPath()
	if err != nil {
		if os.Getenv(EnvRequireBrowser) == "1" {
			t.Fatalf("e2e: %v (%s=1)", err, EnvRequireBrowser)
		}
		msg := fmt.Sprintf("CHROMIUM NOT AVAILABLE: %v. Set %s=1 to fail instead of skipping.", err, EnvRequireBrowser)
		loudOnce.Do(func() { fmt.Fprintln(os.Stderr, "!!! "+msg) })
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1360, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first run starts the browser: no timeout on it (it would stop
	// the browser), later actions get theirs in run.
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(ctx) }()
	select {
	case err = <-start:
	case <-time.After(60 * time.Second):
		err = errors.New("chromium did not start within 60s")
	}
	if err != nil {
		t.Fatalf("e2e: starting chromium (%s): %v", path, err)
	}
	return ctx
}

// actionTimeout bounds one step of a test.
const actionTimeout = 30 * time.Second

// run runs browser actions, failing the test with what was being done and
// the page as it was.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(actx, steps...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, describePage(ctx))
	}
}

// value runs one action that returns a value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, describePage(ctx))
	}
	return v
}

// describePage returns the tab's address and text, for failures.
func describePage(ctx context.Context) string {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url, _ := chromedp.Run(actx, chromedp.Location())
	body, _ := chromedp.Run(actx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	return fmt.Sprintf("(page %s:\n%s)", url, body)
}

// text returns the text of the first element matching a CSS selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(value(t, ctx, "reading "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// pollJS waits until a JavaScript expression is true in the page.
func pollJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	value(t, ctx, "waiting for "+what, chromedp.Poll[bool](expr,
		chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}
