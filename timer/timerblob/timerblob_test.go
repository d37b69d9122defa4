package timerblob_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/lease"

	"github.com/jobhost/jobhost/timer"
	"github.com/jobhost/jobhost/timer/timerblob"
	"github.com/jobhost/jobhost/timer/timertest"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// backend returns stores on the shared Azurite's azure-webjobs-hosts
// container, each with its own client, for a host id of the test's own.
func backend(t *testing.T) (timertest.Backend, *azuritetest.Server, string) {
	srv := azuritetest.SharedBlob(t)
	hostID := strings.ToLower(timertest.FunctionName(t))
	hostID = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(hostID, "-")
	open := func(t *testing.T) *timerblob.Store {
		s, err := timerblob.New(srv.BlobClient(t, false), hostID)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return timertest.Backend{
		NewLocker:      func(t *testing.T) timer.Locker { return open(t) },
		NewStatusStore: func(t *testing.T) timer.StatusStore { return open(t) },
		Lease:          timerblob.MinLease,
	}, srv, hostID
}

func TestLocker(t *testing.T) {
	b, _, _ := backend(t)
	timertest.TestLocker(t, b)
}

func TestStatusStore(t *testing.T) {
	b, _, _ := backend(t)
	timertest.TestStatusStore(t, b)
}

func TestRunners(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time: about 40 s")
	}
	b, _, _ := backend(t)
	timertest.TestRunners(t, b)
}

func download(t *testing.T, c *azblob.Client, name string) []byte {
	t.Helper()
	resp, err := c.DownloadStream(context.Background(), timerblob.Container, name, nil)
	if err != nil {
		t.Fatalf("download %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The status blob is where and as Functions writes it.
func TestStatusLayout(t *testing.T) {
	_, srv, hostID := backend(t)
	c := srv.BlobClient(t, false)
	s, err := timerblob.New(c, hostID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	st := timer.Status{
		Last:        time.Date(2026, 3, 29, 3, 30, 0, 0, berlin),
		Next:        time.Date(2026, 3, 30, 2, 30, 0, 0, berlin),
		LastUpdated: time.Date(2026, 3, 29, 3, 30, 0, 4567000, berlin),
	}
	if err := s.Save(ctx, "MyFunction", st); err != nil {
		t.Fatal(err)
	}
	path := "timers/" + hostID + "/MyFunction/status"
	if s.StatusPath("MyFunction") != path {
		t.Fatalf("StatusPath = %s", s.StatusPath("MyFunction"))
	}
	got := string(download(t, c, path))
	want := `{"Last":"2026-03-29T03:30:00+02:00","Next":"2026-03-30T02:30:00+02:00","LastUpdated":"2026-03-29T03:30:00.004567+02:00"}`
	if got != want {
		t.Errorf("status blob\n got %s\nwant %s", got, want)
	}
	// A status blob as Functions writes it (UTF-8 BOM, seven digits).
	functions := "\xef\xbb\xbf" + `{"Last":"2026-03-29T03:30:00.0076335+00:00","Next":"2026-03-29T03:35:00+00:00","LastUpdated":"2026-03-29T03:30:00.0076335+00:00"}`
	if _, err := c.UploadBuffer(ctx, timerblob.Container, s.StatusPath("Other"), []byte(functions), nil); err != nil {
		t.Fatal(err)
	}
	read, err := s.Load(ctx, "Other")
	if err != nil || !read.Next.Equal(time.Date(2026, 3, 29, 3, 35, 0, 0, time.UTC)) {
		t.Fatalf("read Functions' status: %+v, %v", read, err)
	}
	var raw map[string]string
	if err := json.Unmarshal([]byte(got), &raw); err != nil || len(raw) != 3 {
		t.Fatalf("status blob is not three string fields: %v", err)
	}
}

// The lock is a lease on locks/{hostId}/{function}.Listener, so a
// Functions host sharing the account and host id sees it held.
func TestLockLayout(t *testing.T) {
	_, srv, hostID := backend(t)
	c := srv.BlobClient(t, false)
	s, _ := timerblob.New(c, hostID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := s.Acquire(ctx, "MyFunction", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	name := "locks/" + hostID + "/MyFunction.Listener"
	if s.LockPath("MyFunction") != name {
		t.Fatalf("LockPath = %s", s.LockPath("MyFunction"))
	}
	props, err := c.ServiceClient().NewContainerClient(timerblob.Container).NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if props.LeaseState == nil || *props.LeaseState != "leased" || props.LeaseDuration == nil || *props.LeaseDuration != "fixed" {
		t.Errorf("lock blob lease state %v, duration %v", props.LeaseState, props.LeaseDuration)
	}
	// Breaking the lease (as an operator may) makes the renewal fail.
	lc, _ := lease.NewBlobClient(c.ServiceClient().NewContainerClient(timerblob.Container).NewBlockBlobClient(name), nil)
	if _, err := lc.BreakLease(ctx, &lease.BlobBreakOptions{BreakPeriod: new(int32)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx); !errors.Is(err, timer.ErrLeaseLost) {
		t.Errorf("renew after a break: %v, want ErrLeaseLost", err)
	}
	if _, err := s.Acquire(ctx, "MyFunction", 5*time.Second); err == nil {
		t.Error("a 5 s blob lease was accepted")
	}
}
