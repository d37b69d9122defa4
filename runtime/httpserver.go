package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jobhost/jobhost/dashboard"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/httpapi"
)

// CategoryHTTP logs the host's HTTP listener.
const CategoryHTTP = "Host.HTTP"

// httpServer is the host's HTTP listener (jobhost.http.listen): the
// operations API under OperationsPath (when the host keeps operation
// records), the metrics at MetricsPath and the health checks at LivezPath
// and ReadyzPath.
type httpServer struct {
	srv    *http.Server
	client *client.Client // nil without the operations API
	done   chan struct{}
	log    *zap.Logger
}

// startHTTP starts the listener when jobhost.http.listen is set; it
// returns nil otherwise (a nil *httpServer's methods do nothing).
func (h *Host) startHTTP() (*httpServer, error) {
	addr := h.cfg.HTTP.Listen
	if addr == "" {
		return nil, nil
	}
	log := h.logs.Category(CategoryHTTP)
	keys := httpapi.KeysFromSettings(h.settings.Names(), h.settings.Lookup)
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, h.metrics.handler)
	mux.Handle(LivezPath, healthHandler(h.live))
	mux.Handle(ReadyzPath, healthHandler(h.ready))
	var c *client.Client
	if h.records != nil {
		opts, err := ClientOptions(h.cfg, h.settings, h.registry)
		if err != nil {
			return nil, err
		}
		opts.Store = recordsStore{h.records}
		opts.OnCancel = func(id string) { h.records.cancelLocal(id) }
		opts.OnSent = h.wake
		if c, err = client.New(opts); err != nil {
			return nil, err
		}
		api, err := httpapi.New(httpapi.Options{Operations: c, Keys: keys, Prefix: OperationsPath,
			CheckCallback: h.callbacks.CheckURL, Logger: log})
		if err != nil {
			c.Close()
			return nil, err
		}
		mux.Handle(OperationsPath, api)
		mux.Handle(OperationsPath+"/", api)
	}
	closeClient := func() {
		if c != nil {
			c.Close()
		}
	}
	if d := h.cfg.Dashboard; !d.Disabled {
		dopts := dashboard.Options{Source: h.Status(), Keys: keys, Logger: log, ReadOnly: d.ReadOnly, AllowRemote: d.AllowRemote}
		if user, ok := h.settings.Lookup(SettingDashboardUser); ok && user != "" {
			pass, _ := h.settings.Lookup(SettingDashboardPassword)
			dopts.BasicAuth = &dashboard.BasicAuth{User: user, Password: pass}
		}
		if c != nil {
			dopts.Operations = c
			dopts.Counter = recordsStore{h.records}
		}
		dash, err := dashboard.New(dopts)
		if err != nil {
			closeClient()
			return nil, &ConfigError{Problems: []Problem{{"jobhost.dashboard", err.Error()}}}
		}
		mux.Handle("/", dash)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		closeClient()
		return nil, fmt.Errorf("jobhost.http.listen: %w", err)
	}
	s := &httpServer{client: c, log: log, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: zap.NewStdLog(log)}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP listener stopped", zap.Error(err))
		}
	}()
	a := ln.Addr().String()
	h.httpAddr.Store(&a) // before the log line, which tests wait for
	fields := []zap.Field{zap.String("address", a), zap.String("metrics", "http://"+a+MetricsPath)}
	if c != nil {
		fields = append(fields, zap.String("operations", "http://"+ln.Addr().String()+OperationsPath))
	}
	if !h.cfg.Dashboard.Disabled {
		fields = append(fields, zap.String("dashboard", "http://"+ln.Addr().String()+"/"))
	}
	if keys.Empty() && c != nil {
		log.Warn("HTTP listener started without keys: the operations API answers loopback callers only (set JOBHOST_ADMIN_KEY to serve others)", fields...)
	} else {
		log.Info("HTTP listener started", fields...)
	}
	return s, nil
}

// stop stops the listener once the host's listeners drained: it serves
// through the drain (/readyz failing, /livez and /metrics answering), and
// requests under way then get until by (at least httpShutdownGrace) to
// finish.
func (s *httpServer) stop(by time.Time) {
	if s == nil {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), later(by, time.Now().Add(httpShutdownGrace)))
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
	if s.client != nil {
		s.client.Close()
	}
}

// httpShutdownGrace is the least that requests under way get at the end.
const httpShutdownGrace = time.Second

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// HTTPAddr returns the address the HTTP listener listens on once Run
// started it ("" when there is none).
func (h *Host) HTTPAddr() string {
	if a := h.httpAddr.Load(); a != nil {
		return *a
	}
	return ""
}

// recordsStore is the host's operations store as the API sees it: opened
// on first use, as the record keeper opens it, and never closed by the
// API (the host closes it).
type recordsStore struct{ r *records }

func (s recordsStore) store(ctx context.Context) (operations.Store, error) { return s.r.getStore(ctx) }

func (s recordsStore) Create(ctx context.Context, rec *operations.Record) (*operations.Record, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.Create(ctx, rec)
}

func (s recordsStore) Get(ctx context.Context, id string) (*operations.Record, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.Get(ctx, id)
}

func (s recordsStore) Update(ctx context.Context, id string, c operations.Change) (*operations.Record, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.Update(ctx, id, c)
}

func (s recordsStore) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.List(ctx, q)
}

func (s recordsStore) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	st, err := s.store(ctx)
	if err != nil {
		return 0, err
	}
	return st.Purge(ctx, now, limit)
}

func (recordsStore) Close() error { return nil }

// CountByStatus counts through the host's store when it can count
// (operations.Counter), for the dashboard.
func (s recordsStore) CountByStatus(ctx context.Context, name string) (map[operations.Status]int, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	if u, ok := st.(unclosable); ok {
		st = u.Store
	}
	c, ok := st.(operations.Counter)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return c.CountByStatus(ctx, name)
}
