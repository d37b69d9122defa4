package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/operations"
	// The default stores: Table Storage on the functions' Storage
	// connection, and memory.
	_ "github.com/jobhost/jobhost/operations/memstore"
	_ "github.com/jobhost/jobhost/operations/tablestore"
)

// CategoryOperations logs the background operation records.
const CategoryOperations = "Host.Operations"

// operationsStoreKind is the store the host keeps records in: the
// configured one, else Table Storage when a function reads a Storage
// Queue (its connection is there), else none.
func operationsStoreKind(cfg *Config, funcs []*FunctionConfig) string {
	if cfg.Operations.Store != "" {
		return cfg.Operations.Store
	}
	for _, fc := range funcs {
		if fc.StorageQueue() && !fc.Disabled {
			return "table"
		}
	}
	return ""
}

// operationsConnection is the connection of the store: the configured one,
// else for a table store the Storage connection of the first function on
// a Storage Queue.
func operationsConnection(cfg *Config, funcs []*FunctionConfig, kind string) string {
	if c := cfg.Operations.Connection; c != "" || kind != "table" {
		return c
	}
	for _, fc := range funcs {
		if fc.StorageQueue() && !fc.Disabled {
			return fc.Connection
		}
	}
	return "Storage"
}

// OpenOperationsStore opens the store host.json's jobhost.operations
// names (the CLI's operations commands use it). It returns nil and no
// error when the host keeps no records.
func OpenOperationsStore(ctx context.Context, cfg *Config, funcs []*FunctionConfig, settings *AppSettings, migrate bool) (operations.Store, error) {
	kind := operationsStoreKind(cfg, funcs)
	if kind == "" {
		return nil, nil
	}
	s, err := operations.OpenStore(ctx, kind, operations.OpenOptions{
		Lookup:     settings.Lookup,
		Connection: operationsConnection(cfg, funcs, kind),
		Table:      cfg.Operations.Table,
		TimeToLive: cfg.Operations.TimeToLive,
		Migrate:    migrate,
	})
	if err != nil {
		return nil, &redactedError{msg: fmt.Sprintf("operations store (%s): %s", kind, redact.All(err.Error())), err: err}
	}
	return s, nil
}

// setupRecords makes the host's record keeper, opening its store on first
// use. An explicit store (Options.Operations) wins over host.json.
func (h *Host) setupRecords(explicit operations.Store, settings *AppSettings) {
	open := func(ctx context.Context) (operations.Store, error) {
		return OpenOperationsStore(ctx, h.cfg, h.funcs, settings, false)
	}
	if explicit != nil {
		// The caller's store: the host uses it and leaves it open.
		open = func(context.Context) (operations.Store, error) { return unclosable{explicit}, nil }
	} else if operationsStoreKind(h.cfg, h.funcs) == "" {
		return
	}
	r := newRecords(func(ctx context.Context) (operations.Store, error) {
		s, err := open(ctx)
		if err == nil && s == nil {
			err = fmt.Errorf("no operations store is configured")
		}
		return s, err
	}, h.logs.Category(CategoryOperations))
	r.completed = h.operationCompleted
	h.records = r
}

// operationCompleted posts a completed operation's callback, Dataverse's
// payload signed as the Standard Webhooks spec says.
func (h *Host) operationCompleted(rec *operations.Record) {
	if rec.CallbackURL == "" {
		return
	}
	p := OperationCallback{
		ID: rec.ID, State: int(rec.State()), Status: int(rec.Status),
		StateName: rec.State().String(), StatusName: rec.Status.String(), Location: h.operationLocation(rec.ID),
	}
	if rec.Status == operations.Failed {
		p.ErrorCode, p.ErrorMessage = rec.ErrorCode, rec.ErrorMessage
	}
	h.callbacks.PostJSON(rec.CallbackURL, p, rec.ID+"."+rec.Status.String())
}

// OperationCallback is the JSON body POSTed to an operation's callback
// URL when it completes (client.OperationCallback, Dataverse's payload).
type OperationCallback = client.OperationCallback

// operationLocation is the status URL of operation id on this host's API,
// or "" when it serves none.
func (h *Host) operationLocation(id string) string {
	base := h.cfg.HTTP.BaseURL
	if base == "" && h.cfg.HTTP.Listen != "" {
		addr := h.HTTPAddr() // the port it got, where the setting says 0
		if addr == "" {
			addr = h.cfg.HTTP.Listen
		}
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
				addr = net.JoinHostPort("127.0.0.1", port) // all interfaces: loopback is one
			}
		}
		base = "http://" + addr
	}
	if base == "" {
		return ""
	}
	return strings.TrimSuffix(base, "/") + OperationsPath + "/" + id
}

// OperationsPath is where the host's HTTP listener serves the operations
// API.
const OperationsPath = "/api/operations"

// runRecords opens the store and starts the record keeper and the purge
// sweep; the sweep ends with ctx. A store whose schema is missing is a
// configuration problem; one that cannot be reached is not (its writes
// wait for it).
func (h *Host) runRecords(ctx context.Context) error {
	if h.records == nil {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := h.records.getStore(octx)
	cancel()
	switch {
	case errors.Is(err, operations.ErrNotMigrated):
		return &ConfigError{Problems: []Problem{{"jobhost.operations", redact.All(err.Error())}}}
	case err != nil:
		h.records.outage(err)
	}
	h.records.start()
	go h.records.countStates(ctx, countInterval)
	go func() {
		interval := h.cfg.Operations.PurgeInterval
		if interval <= 0 {
			interval = DefaultPurgeInterval
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			n, err := h.records.sweep(sctx)
			cancel()
			if err != nil {
				h.records.log.Warn("purging expired operation records failed", zap.Int("purged", n), zap.Error(err))
			} else if n > 0 {
				h.records.log.Info("purged expired operation records", zap.Int("purged", n))
			}
		}
	}()
	return nil
}

// countInterval is how often the host counts operation records by status
// for jobhost_operations, when its store can count.
const countInterval = 30 * time.Second

// countStates counts the records by status every interval until ctx ends,
// when the store is an operations.Counter.
func (r *records) countStates(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, interval)
		if st, err := r.getStore(cctx); err == nil {
			if u, ok := st.(unclosable); ok {
				st = u.Store
			}
			c, ok := operations.CounterOf(st)
			if !ok {
				cancel()
				return
			}
			if byStatus, err := c.CountByStatus(cctx, ""); err == nil {
				m := make(map[string]int, len(byStatus))
				for s, n := range byStatus {
					m[s.String()] = n
				}
				r.counts.Store(&m)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unclosable is a store the host was given: its Close does nothing.
type unclosable struct{ operations.Store }

func (unclosable) Close() error { return nil }

// redactedError is err with secrets taken out of its text; errors.Is and
// As still see err.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
