package sitemodify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

func TestRejectsNonHTTPS(t *testing.T) {
	for _, u := range []string{"http://intranet.local/sites/a", "contoso.sharepoint.com/sites/a", "", "https://", "ftp://x/y"} {
		err := ProcessSiteModifyRequest(context.Background(), SiteModifyRequest{SiteURL: u}, &triggers.Message{})
		if err == nil || !strings.Contains(err.Error(), "not an absolute https URL") {
			t.Errorf("%q: got %v", u, err)
		}
	}
}

func TestWorksThenSucceeds(t *testing.T) {
	req := SiteModifyRequest{SiteURL: "https://contoso.sharepoint.com/sites/a", RequestorName: "Megan", WorkMs: 5}
	if err := ProcessSiteModifyRequest(context.Background(), req, &triggers.Message{DequeueCount: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	req := SiteModifyRequest{SiteURL: "https://contoso.sharepoint.com/sites/a", WorkMs: int(time.Hour / time.Millisecond)}
	go func() { done <- ProcessSiteModifyRequest(ctx, req, &triggers.Message{}) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the function ignored cancellation")
	}
}

func TestRegistersWithDefaultQueue(t *testing.T) {
	r := &functions.Registry{}
	Register(r)
	defs := r.Functions()
	if len(defs) != 1 || defs[0].Name != "ProcessSiteModifyRequest" || defs[0].Trigger.Queue != "%SiteModifyQueue%" {
		t.Fatalf("registered %+v", defs)
	}
	if r.SettingDefaults()[QueueSetting] != DefaultQueue {
		t.Errorf("default queue setting: %v", r.SettingDefaults())
	}
}
