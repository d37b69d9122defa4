package runtime

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/jobhost/jobhost/operations/httpapi"
	"github.com/jobhost/jobhost/status"
)

// Health endpoints on the host's HTTP listener.
const (
	// LivezPath answers 200 while the process and its poll loops are
	// alive: 503 when a poll has been stuck in a Receive past its bound.
	LivezPath = "/livez"
	// ReadyzPath answers 200 when every listener started and its last
	// poll reached the broker, and 503 before that, during a broker
	// outage and from the moment the shutdown begins.
	ReadyzPath = "/readyz"
)

// livenessGrace is how long past receiveBound a Receive may take before
// /livez fails.
const livenessGrace = 30 * time.Second

// healthCheck is one listener's line in a health answer.
type healthCheck struct {
	Function string       `json:"function"`
	State    status.State `json:"state"`
	OK       bool         `json:"ok"`
	Reason   string       `json:"reason,omitempty"`
}

type healthAnswer struct {
	Status string        `json:"status"` // "ok" or "fail"
	Reason string        `json:"reason,omitempty"`
	Checks []healthCheck `json:"checks"`
}

// live checks that no poll is stuck.
func (h *Host) live(now time.Time) healthAnswer {
	a := healthAnswer{Status: "ok"}
	for _, l := range h.currentListeners() {
		c := healthCheck{Function: l.fc.Name(), State: l.stats.stateName(), OK: true}
		if d := l.stats.receivingFor(now); d > receiveBound+livenessGrace {
			c.OK, c.Reason = false, "a receive has been under way for "+d.Round(time.Second).String()
		}
		a.add(c)
	}
	return a
}

// ready checks that the host serves: started, not stopping, every
// listener's broker reached by its last poll.
func (h *Host) ready(now time.Time) healthAnswer {
	a := healthAnswer{Status: "ok"}
	switch {
	case h.stopping.Load():
		a.Status, a.Reason = "fail", "the host is shutting down"
	case !h.started.Load():
		a.Status, a.Reason = "fail", "the host is starting"
	}
	for _, l := range h.currentListeners() {
		st := l.stats.stateName()
		c := healthCheck{Function: l.fc.Name(), State: st, OK: true}
		switch {
		case st == status.Starting:
			c.OK, c.Reason = false, "no poll has reached the broker yet"
		case st == status.Failing:
			c.OK = false
			if e := l.stats.lastErr.Load(); e != nil {
				c.Reason = "the last poll failed: " + e.msg
			}
		case l.stats.receivingFor(now) > receiveBound:
			c.OK, c.Reason = false, "the broker has not answered a receive for over "+receiveBound.String()
		}
		a.add(c)
	}
	return a
}

func (a *healthAnswer) add(c healthCheck) {
	if !c.OK {
		a.Status = "fail"
	}
	a.Checks = append(a.Checks, c)
}

// healthHandler serves one of the checks.
func healthHandler(check func(time.Time) healthAnswer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, "method", "only GET and HEAD are allowed")
			return
		}
		a := check(time.Now())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if a.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(a) //nolint:errcheck // the client went away
	})
}
