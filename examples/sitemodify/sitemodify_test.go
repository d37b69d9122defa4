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
		_, err := ProcessSiteModifyRequest(context.Background(), SiteModifyRequest{SiteURL: u}, &triggers.Message{})
		if err == nil || !strings.Contains(err.Error(), "not an absolute https URL") {
			t.Errorf("%q: got %v", u, err)
		}
	}
}

func TestWorksThenSucceeds(t *testing.T) {
	req := SiteModifyRequest{SiteURL: "https://contoso.sharepoint.com/sites/a", RequestorName: "Megan", WorkMs: 5}
	res, err := ProcessSiteModifyRequest(context.Background(), req, &triggers.Message{DequeueCount: 1})
	if err != nil || res.Status != "modified" || res.SiteURL != req.SiteURL || res.RequestorName != "Megan" || res.CompletedAt.IsZero() {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	req := SiteModifyRequest{SiteURL: "https://contoso.sharepoint.com/sites/a", WorkMs: int(time.Hour / time.Millisecond)}
	go func() { _, err := ProcessSiteModifyRequest(ctx, req, &triggers.Message{}); done <- err }()
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
	ref := Register(r)
	if ref.Name() != "ProcessSiteModifyRequest" || ProcessSiteModify != ref {
		t.Errorf("Register returned %q; ProcessSiteModify is %q", ref.Name(), ProcessSiteModify.Name())
	}
	defs := r.Functions()
	if len(defs) != 1 || defs[0].Name != "ProcessSiteModifyRequest" || defs[0].Trigger.Queue != "%SiteModifyQueue%" ||
		len(defs[0].Settings.Outputs) != 1 || defs[0].Settings.Outputs[0].Target != "%SiteModifyResultsQueue%" {
		t.Fatalf("registered %+v", defs)
	}
	if r.SettingDefaults()[QueueSetting] != DefaultQueue {
		t.Errorf("default queue setting: %v", r.SettingDefaults())
	}
}
