package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/httpapi"
)

// CategoryHTTP logs the host's HTTP listener.
const CategoryHTTP = "Host.HTTP"

// httpServer is the host's HTTP listener (jobhost.http.listen): the
// operations API under OperationsPath.
type httpServer struct {
	srv    *http.Server
	client *client.Client
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
	if h.records == nil {
		return nil, &ConfigError{Problems: []Problem{{"jobhost.http.listen",
			"the operations API needs an operations store: set jobhost.operations.store (table, postgres or memory)"}}}
	}
	opts, err := ClientOptions(h.cfg, h.settings, h.registry)
	if err != nil {
		return nil, err
	}
	opts.Store = recordsStore{h.records}
	opts.OnCancel = func(id string) { h.records.cancelLocal(id) }
	opts.OnSent = h.wake
	c, err := client.New(opts)
	if err != nil {
		return nil, err
	}
	keys := httpapi.KeysFromSettings(h.settings.Names(), h.settings.Lookup)
	api, err := httpapi.New(httpapi.Options{Operations: c, Keys: keys, Prefix: OperationsPath,
		CheckCallback: h.callbacks.CheckURL, Logger: log})
	if err != nil {
		c.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(OperationsPath, api)
	mux.Handle(OperationsPath+"/", api)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.Close()
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
	fields := []zap.Field{zap.String("address", ln.Addr().String()), zap.String("operations", "http://"+ln.Addr().String()+OperationsPath)}
	if keys.Empty() {
		log.Warn("HTTP listener started without keys: the operations API answers loopback callers only (set JOBHOST_ADMIN_KEY to serve others)", fields...)
	} else {
		log.Info("HTTP listener started", fields...)
	}
	a := ln.Addr().String()
	h.httpAddr.Store(&a)
	return s, nil
}

// stopAccepting stops the listener at the start of the shutdown: requests
// under way get httpShutdownGrace to finish.
func (s *httpServer) stopAccepting() {
	if s == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownGrace)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		s.client.Close()
	}()
}

const httpShutdownGrace = 5 * time.Second

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
