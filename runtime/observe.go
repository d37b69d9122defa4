package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// depthInterval is how often a listener samples its queue's depth.
const depthInterval = 15 * time.Second

// brokerName names fc's driver for metrics and the dashboard.
func brokerName(fc *FunctionConfig) string {
	if fc.Timer != nil {
		return "timer"
	}
	if fc.URL == nil {
		return "azurequeue"
	}
	switch s := fc.URL.Scheme; s {
	case "rabbit":
		return "rabbitmq"
	case "nats":
		return "jetstream"
	case "azuresb":
		return "servicebus"
	case "mem":
		return "mempubsub"
	default:
		return s
	}
}

// sampleDepth counts l's queue every depthInterval until ctx ends, when
// its driver can count.
func (l *listener) sampleDepth(ctx context.Context) {
	dc, ok := l.drv.(triggers.DepthCounter)
	if !ok {
		return
	}
	t := time.NewTicker(depthInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := dc.Depth(cctx)
		cancel()
		if err == nil {
			l.stats.depth.Store(n)
			l.stats.depthAt.Store(time.Now().UnixNano())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Status returns the host as its observers see it: the dashboard, or a
// program's own. It may be called before Run (every listener then is
// starting).
func (h *Host) Status() status.Source { return hostStatus{h} }

// hostStatus is a Host as a status.Source.
type hostStatus struct{ h *Host }

// Functions returns a snapshot of every function.
func (hs hostStatus) Functions() []status.Function {
	h := hs.h
	h.obsMu.Lock()
	ls := h.listeners
	h.obsMu.Unlock()
	byName := make(map[string]*listener, len(ls))
	for _, l := range ls {
		byName[l.fc.Name()] = l
	}
	out := make([]status.Function, 0, len(h.funcs))
	for _, fc := range h.funcs {
		f := status.Function{Name: fc.Name(), Queue: fc.Queue, Broker: brokerName(fc), Poison: fc.Poison,
			MessageEncoding: string(fc.Queues.MessageEncoding), State: status.Starting, Depth: -1,
			Concurrency: fc.Queues.BatchSize + fc.Queues.NewBatchThreshold}
		f.PoisonAdmin = h.poisonAdminAvailable(fc)
		if fc.Disabled {
			f.State = status.Disabled
		}
		if l := byName[fc.Name()]; l != nil {
			s := &l.stats
			if p := l.drv.PoisonDestination(); p != "" {
				f.Poison = p
			}
			f.State = s.stateName()
			f.InFlight = l.running()
			f.Received, f.Succeeded, f.Failed = s.received.Load(), s.succeeded.Load(), s.failed.Load()
			f.Poisoned, f.Cancelled = s.poisoned.Load(), s.cancelled.Load()+s.opCanceled.Load()
			if e := s.lastErr.Load(); e != nil {
				f.LastError, f.LastErrorAt = e.msg, e.at
			}
			f.LastPoll = unixTime(s.lastPoll.Load())
			if at := s.depthAt.Load(); at != 0 {
				f.Depth, f.DepthAt = s.depth.Load(), unixTime(at)
			}
		}
		out = append(out, f)
	}
	return out
}

// Invocations returns the recent invocations f selects, newest first.
func (hs hostStatus) Invocations(f status.Filter) []status.Invocation { return hs.h.ring.List(f) }

// OpenPoison opens the poison administration of a function's queue, as
// the CLI's poison commands do.
func (hs hostStatus) OpenPoison(ctx context.Context, function string) (triggers.PoisonAdmin, error) {
	h := hs.h
	fc := h.function(function)
	if fc == nil {
		return nil, fmt.Errorf("no function %q", function)
	}
	if fc.Timer != nil {
		return nil, fmt.Errorf("function %s is a timer: it has no poison messages", function)
	}
	if fc.URL != nil {
		return OpenPoison(ctx, fc.URL, fc.Connection, fc.Poison, h.settings)
	}
	svc, err := newAzureOpener(h.settings).client(fc.Connection)
	if err != nil {
		return nil, err
	}
	return azurequeue.OpenPoison(svc, fc.Queue)
}

func (h *Host) function(name string) *FunctionConfig {
	for _, fc := range h.funcs {
		if fc.Name() == name {
			return fc
		}
	}
	return nil
}

// poisonAdminAvailable reports whether fc's driver has poison tools.
func (h *Host) poisonAdminAvailable(fc *FunctionConfig) bool {
	if fc.Timer != nil {
		return false
	}
	if fc.URL == nil {
		return true
	}
	s, err := lookupScheme(fc.URL.Scheme)
	return err == nil && s.Poison != nil
}
