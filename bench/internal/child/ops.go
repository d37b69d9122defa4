package child

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/runtime"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// countingStore counts the calls the host (its record keeper and its HTTP
// API) makes to the operations store: writes (Create, an Update that
// changed the record) and reads (Get, List, and each record an Update read
// to apply its change). It closes done when target records were made
// Succeeded and keeps when the last one was.
type countingStore struct {
	operations.Store
	creates, updates, succeeded      atomic.Int64
	gets, lists, updateReads, upCall atomic.Int64
	lastSucceeded                    atomic.Int64 // unix ns

	target   int64
	done     chan struct{}
	doneOnce sync.Once
	// createdToSucceeded[i] is the i-th Succeeded record's EndTime -
	// CreatedOn (ns).
	createdToSucceeded []atomic.Int64
}

func newCountingStore(inner operations.Store, target int64) *countingStore {
	return &countingStore{Store: inner, target: target, done: make(chan struct{}),
		createdToSucceeded: make([]atomic.Int64, max(target, 1))}
}

func (s *countingStore) Create(ctx context.Context, r *operations.Record) (*operations.Record, error) {
	rec, err := s.Store.Create(ctx, r)
	if err == nil {
		s.creates.Add(1)
	}
	return rec, err
}

func (s *countingStore) Get(ctx context.Context, id string) (*operations.Record, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

func (s *countingStore) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	s.lists.Add(1)
	return s.Store.List(ctx, q)
}

func (s *countingStore) Update(ctx context.Context, id string, c operations.Change) (*operations.Record, error) {
	s.upCall.Add(1)
	changed := false
	rec, err := s.Store.Update(ctx, id, func(r *operations.Record) (bool, error) {
		s.updateReads.Add(1)
		ch, err := c(r)
		changed = ch && err == nil
		return ch, err
	})
	if err != nil || !changed {
		return rec, err
	}
	s.updates.Add(1)
	if rec.Status == operations.Succeeded {
		now := time.Now().UnixNano()
		n := s.succeeded.Add(1)
		s.lastSucceeded.Store(now)
		if n <= int64(len(s.createdToSucceeded)) && !rec.CreatedOn.IsZero() && !rec.EndTime.IsZero() {
			s.createdToSucceeded[n-1].Store(int64(rec.EndTime.Sub(rec.CreatedOn)) + 1)
		}
		if n == s.target {
			s.doneOnce.Do(func() { close(s.done) })
		}
	}
	return rec, nil
}

// loadGen makes n requests with conc goroutines, each stamped just before
// it is made.
type loadGen struct {
	sent, errs atomic.Int64
	firstErr   atomic.Value
	firstAt    atomic.Int64 // unix ns of the first request
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

func (g *loadGen) run(ctx context.Context, n int64, conc int, do func(ctx context.Context, id int64) error) {
	ctx, g.cancel = context.WithCancel(ctx)
	var next atomic.Int64
	for range max(conc, 1) {
		g.wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if i == 0 {
					g.firstAt.Store(time.Now().UnixNano())
				}
				if err := do(ctx, i); err != nil {
					if ctx.Err() != nil {
						return
					}
					g.errs.Add(1)
					g.firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				g.sent.Add(1)
			}
		})
	}
}

func (g *loadGen) stop() {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
}

// prepareLoad gives the host of a Load spec its operations store (wrapped
// in a countingStore, warmed up: the table exists and a connection is
// open) and its HTTP listener on a free loopback port.
func (j *jobhost) prepareLoad(ctx context.Context, cfg *runtime.Config) (operations.Store, error) {
	s := j.spec
	if s.Load != proto.LoadSubmit && s.Load != proto.LoadSend {
		return nil, fmt.Errorf("unknown load %q", s.Load)
	}
	var inner operations.Store = memstore.New(memstore.Options{})
	if s.TableConn != "" {
		ts, err := tablestore.FromConnectionString(s.TableConn, tablestore.Options{})
		if err != nil {
			return nil, err
		}
		inner = ts
	}
	// Warm up outside the counter: the table is created on first use.
	warm := &operations.Record{ID: operations.NewID(), Name: "Bench", Status: operations.WaitingForResources, Input: json.RawMessage("null")}
	if _, err := inner.Create(ctx, warm); err != nil {
		return nil, fmt.Errorf("operations store warm-up: %w", err)
	}
	if _, err := inner.Get(ctx, warm.ID); err != nil {
		return nil, fmt.Errorf("operations store warm-up: %w", err)
	}
	j.store = newCountingStore(inner, s.Target)
	cfg.HTTP.Listen = "127.0.0.1:0"
	return j.store, nil
}

// runLoadHost runs the host of a Load spec before READY and waits for its
// HTTP listener, and for LoadSend opens the client the messages go
// through.
func (j *jobhost) runLoadHost(ctx context.Context, cfg *runtime.Config, settings *runtime.AppSettings, target string) error {
	j.start(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for j.host.HTTPAddr() == "" {
		select {
		case err := <-j.done:
			j.done <- err
			return fmt.Errorf("host stopped at start: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the host's HTTP listener did not start within 30 s")
		}
	}
	switch j.spec.Load {
	case proto.LoadSubmit:
		j.postURL = "http://" + j.host.HTTPAddr() + runtime.OperationsPath + "/Bench"
		j.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: max(j.spec.Concurrency, 2), DisableCompression: true, IdleConnTimeout: time.Minute}}
	case proto.LoadSend:
		c, err := runtime.NewClient(cfg, settings, j.reg, nil)
		if err != nil {
			return err
		}
		t, err := c.Target(target, "")
		if err != nil {
			c.Close()
			return err
		}
		if err := c.Open(ctx, t); err != nil {
			c.Close()
			return err
		}
		j.client, j.sendTarget = c, target
	}
	return nil
}

// startLoad starts the load generator (GO).
func (j *jobhost) startLoad(ctx context.Context) {
	s := j.spec
	do := j.send
	if s.Load == proto.LoadSubmit {
		do = j.post
	}
	j.gen.run(ctx, s.Target, s.Concurrency, do)
}

// post submits operation id over HTTP and expects 202.
func (j *jobhost) post(ctx context.Context, id int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.postURL, bytes.NewReader(workload.Body(id, time.Now())))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := j.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", j.postURL, resp.Status, bytes.TrimSpace(b))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// send sends message id with client.Send.
func (j *jobhost) send(ctx context.Context, id int64) error {
	_, err := j.client.Send(ctx, j.sendTarget, json.RawMessage(workload.Body(id, time.Now())))
	return err
}

// loadDone is closed when the run is complete: every record Succeeded
// (LoadSubmit) or every message processed (LoadSend).
func (j *jobhost) loadDone() <-chan struct{} {
	if j.spec.Load == proto.LoadSubmit {
		return j.store.done
	}
	return j.rec.Done
}

// loadResult fills what a Load child measured: the window starts at the
// first request and, for submissions, ends when the last record was made
// Succeeded.
func (j *jobhost) loadResult(res *proto.ChildResult) {
	if t := j.gen.firstAt.Load(); t > 0 {
		res.GoAt = t
	}
	st := j.store
	if j.spec.Load == proto.LoadSubmit {
		res.LastAt = st.lastSucceeded.Load()
	}
	o := &proto.OpsResult{
		Sent: j.gen.sent.Load(), SendErrors: j.gen.errs.Load(),
		Creates: st.creates.Load(), Updates: st.updates.Load(), Succeeded: st.succeeded.Load(),
		Gets: st.gets.Load(), Lists: st.lists.Load(), UpdateReads: st.updateReads.Load(), UpdateCalls: st.upCall.Load(),
	}
	if e, ok := j.gen.firstErr.Load().(string); ok {
		o.FirstSendError = e
	}
	for i := range min(o.Succeeded, int64(len(st.createdToSucceeded))) {
		if v := st.createdToSucceeded[i].Load(); v > 0 {
			o.CreatedToSucceeded = append(o.CreatedToSucceeded, v-1)
		}
	}
	res.Ops = o
}
