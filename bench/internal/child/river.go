package child

import (
	"bytes"
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

type riverWorker struct {
	river.WorkerDefaults[workload.RiverOrder]
	rec *workload.Recorder
}

func (w *riverWorker) Work(ctx context.Context, job *river.Job[workload.RiverOrder]) error {
	w.rec.Record(&job.Args.Order)
	return nil
}

// riverClient is a River client working one queue (the spec's Queue) with
// MaxWorkers 16 over a pgxpool of the DSN (pgxpool's default size unless
// the DSN sets pool_max_conns), River's defaults otherwise: LISTEN/NOTIFY
// for new jobs, FetchCooldown 100 ms and FetchPollInterval 1 s unless the
// spec says otherwise, the batch completer, completed jobs kept (River's
// default retention, 24 h; the bench truncates the table between runs).
type riverClient struct {
	spec   *proto.Spec
	rec    *workload.Recorder
	sink   *logSink
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
}

func (r *riverClient) prepare(ctx context.Context) error {
	var err error
	r.pool, err = pgxpool.New(ctx, r.spec.PostgresURL)
	if err != nil {
		return err
	}
	if err := r.pool.Ping(ctx); err != nil {
		return err
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &riverWorker{rec: r.rec}); err != nil {
		return err
	}
	qc := river.QueueConfig{MaxWorkers: r.spec.Concurrency, FetchCooldown: r.spec.FetchCooldown, FetchPollInterval: r.spec.FetchPoll}
	cfg := &river.Config{
		Queues:  map[string]river.QueueConfig{r.spec.Queue: qc},
		Workers: workers,
		Schema:  r.spec.Schema,
		Logger:  slog.New(slog.NewTextHandler(noteWriter{r.sink}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if r.spec.FetchCooldown > 0 {
		cfg.FetchCooldown = r.spec.FetchCooldown
	}
	if r.spec.FetchPoll > 0 {
		cfg.FetchPollInterval = r.spec.FetchPoll
	}
	r.client, err = river.NewClient(riverpgxv5.New(r.pool), cfg)
	return err
}

func (r *riverClient) start(ctx context.Context) error { return r.client.Start(ctx) }

func (r *riverClient) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := r.client.Stop(ctx)
	r.pool.Close()
	return err
}

// noteWriter keeps every line written to it (a logger already filtered to
// warnings and errors).
type noteWriter struct{ s *logSink }

func (w noteWriter) Write(p []byte) (int, error) {
	w.s.note("river: " + string(bytes.TrimSpace(p)))
	return len(p), nil
}
