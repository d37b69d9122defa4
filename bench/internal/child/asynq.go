package child

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// asynqServer is an asynq server with Concurrency 16 on one queue (the
// spec's Queue), asynq's defaults otherwise (TaskCheckInterval 1 s unless
// the spec says otherwise). The handler decodes the task's payload (the
// same JSON body) and records it; asynq deletes the task when the handler
// returns nil (no Retention).
type asynqServer struct {
	spec *proto.Spec
	rec  *workload.Recorder
	sink *logSink
	srv  *asynq.Server
}

func (a *asynqServer) prepare(context.Context) error {
	opt, err := asynq.ParseRedisURI(a.spec.RedisURL)
	if err != nil {
		return err
	}
	cfg := asynq.Config{
		Concurrency:     a.spec.Concurrency,
		Queues:          map[string]int{a.spec.Queue: 1},
		Logger:          asynqLogger{a.sink},
		LogLevel:        asynq.WarnLevel,
		ShutdownTimeout: 10 * time.Second,
	}
	if a.spec.TaskCheck > 0 {
		cfg.TaskCheckInterval = a.spec.TaskCheck
	}
	a.srv = asynq.NewServer(opt, cfg)
	return a.srv.Ping()
}

func (a *asynqServer) start(context.Context) error {
	rec, sink := a.rec, a.sink
	return a.srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		o, err := workload.Decode(t.Payload())
		if err != nil {
			sink.note("decode: " + err.Error())
		}
		rec.Record(&o)
		return nil
	}))
}

func (a *asynqServer) stop() error {
	a.srv.Shutdown()
	return nil
}

// asynqLogger keeps asynq's warnings and errors.
type asynqLogger struct{ s *logSink }

func (l asynqLogger) Debug(args ...any) {}
func (l asynqLogger) Info(args ...any)  {}
func (l asynqLogger) Warn(args ...any)  { l.s.note("asynq warn: " + fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.s.note("asynq error: " + fmt.Sprint(args...)) }
func (l asynqLogger) Fatal(args ...any) { l.s.note("asynq fatal: " + fmt.Sprint(args...)) }
