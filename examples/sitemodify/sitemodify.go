// Package sitemodify is the SharePoint add-in pattern on jobhost: a web app
// queues a "modify this site" request instead of doing slow provisioning work
// inside the HTTP request, and ProcessSiteModifyRequest picks it up.
//
// Importing the package registers the function in functions.Default; the
// worker in ./worker runs it, and the web app in ./web submits requests to
// it as background operations (client.Start with ProcessSiteModify) and
// shows their records.
package sitemodify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// QueueSetting is the app setting naming the request queue.
const QueueSetting = "SiteModifyQueue"

// DefaultQueue is the queue used when QueueSetting is not set.
const DefaultQueue = "site-modify-requests"

// ResultsSetting names the app setting of the results queue, by default
// DefaultResultsQueue.
const ResultsSetting = "SiteModifyResultsQueue"

// DefaultResultsQueue receives a SiteModifyResult per processed request.
const DefaultResultsQueue = "site-modify-results"

// SiteModifyResult is written to the results queue when a request is done.
type SiteModifyResult struct {
	SiteURL       string    `json:"siteUrl"`
	RequestorName string    `json:"requestorName"`
	Status        string    `json:"status"`
	CompletedAt   time.Time `json:"completedAt"`
}

// SiteModifyRequest is the message the web app queues.
type SiteModifyRequest struct {
	SiteURL       string `json:"siteUrl"`
	RequestorName string `json:"requestorName"`
	// WorkMs is how long the simulated provisioning takes.
	WorkMs int `json:"workMs,omitempty"`
}

// ProcessSiteModify names ProcessSiteModifyRequest, registered in
// functions.Default, for the client's typed calls: the web app starts a
// background operation with
//
//	rec, err := client.Start(ctx, c, sitemodify.ProcessSiteModify, req)
//
// and the compiler checks that req is a SiteModifyRequest.
var ProcessSiteModify = Register(functions.Default)

// Register adds ProcessSiteModifyRequest to r, its result bound to the
// results queue, and returns its Ref.
func Register(r *functions.Registry) functions.Ref[SiteModifyRequest] {
	r.SettingDefault(QueueSetting, DefaultQueue)
	r.SettingDefault(ResultsSetting, DefaultResultsQueue)
	return functions.AddResult(r, "ProcessSiteModifyRequest", functions.QueueTrigger("%"+QueueSetting+"%"),
		"%"+ResultsSetting+"%", ProcessSiteModifyRequest)
}

// ProcessSiteModifyRequest applies a site modification and returns its
// result, which the host writes to the results queue once it succeeded. It
// fails when siteUrl is not an absolute https URL (the message is retried,
// then poisoned); otherwise it works for workMs, stopping early if the host
// cancels it.
func ProcessSiteModifyRequest(ctx context.Context, req SiteModifyRequest, msg *triggers.Message) (SiteModifyResult, error) {
	log := functions.Logger(ctx)
	u, err := url.Parse(req.SiteURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return SiteModifyResult{}, fmt.Errorf("siteUrl %q is not an absolute https URL", req.SiteURL)
	}
	log.Info("modifying site", zap.String("siteUrl", req.SiteURL), zap.String("requestor", req.RequestorName),
		zap.Int64("attempt", msg.DequeueCount))
	if req.WorkMs < 0 {
		return SiteModifyResult{}, errors.New("workMs must not be negative")
	}
	t := time.NewTimer(time.Duration(req.WorkMs) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return SiteModifyResult{}, ctx.Err()
	case <-t.C:
	}
	log.Info("site modified", zap.String("siteUrl", req.SiteURL))
	return SiteModifyResult{SiteURL: req.SiteURL, RequestorName: req.RequestorName, Status: "modified", CompletedAt: time.Now().UTC()}, nil
}
