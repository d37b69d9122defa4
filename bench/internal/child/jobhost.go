package child

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/mempubsub"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers"
	_ "github.com/jobhost/jobhost/triggers/all" // the drivers the scenarios run, registered by import
	"github.com/jobhost/jobhost/triggers/memqueue"
	"github.com/jobhost/jobhost/triggers/pubsub"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// jobhost runs the jobhost runtime with one function, configured as a user
// would (a Config as host.json gives it, app settings for the connection),
// over the real driver of the scenario's broker.
type jobhost struct {
	spec *proto.Spec
	rec  *workload.Recorder
	sink *logSink

	host   *runtime.Host
	cancel context.CancelFunc
	done   chan error

	// mem:// only: the pre-filled topic and subscription the driver reads.
	memTopic, memPoison *gcpubsub.Topic
	memSub              *gcpubsub.Subscription

	// Load specs only (ops.go): the counted store, the load generator,
	// and what it sends through.
	reg        *functions.Registry
	store      *countingStore
	gen        loadGen
	postURL    string
	http       *http.Client
	client     *client.Client
	sendTarget string
}

func (j *jobhost) prepare(ctx context.Context) error {
	s := j.spec
	reg := &functions.Registry{}
	rec := j.rec
	settings := map[string]string{}
	var trigger functions.Trigger
	var open runtime.OpenFunc
	var target string // where LoadSend sends
	switch s.System {
	case proto.JobhostAzure:
		settings["AzureWebJobsStorage"] = s.AzureConn
		trigger = functions.QueueTrigger(s.Queue)
		target = s.Queue
	case proto.JobhostRabbit:
		settings["RABBIT_SERVER_URL"] = s.RabbitURL
		u := "rabbit://" + s.Queue
		if s.TriggerQuery != "" {
			u += "?" + s.TriggerQuery
		}
		trigger = functions.SubscriptionTrigger(u)
	case proto.JobhostNATS:
		settings["NATS_SERVER_URL"] = s.NATSURL
		u := "nats://" + s.Subject + "?stream=" + s.Stream
		if s.TriggerQuery != "" {
			u += "&" + s.TriggerQuery
		}
		trigger = functions.SubscriptionTrigger(u)
	case proto.JobhostRedis:
		settings["REDIS_SERVER_URL"] = s.RedisURL
		trigger = functions.SubscriptionTrigger("redis://" + s.Queue)
	case proto.JobhostPostgres:
		settings["JOBHOST_POSTGRES_URL"] = s.PostgresURL
		trigger = functions.SubscriptionTrigger("postgres://" + s.Queue + "?schema=" + s.Schema)
	case proto.JobhostMem:
		// mem:// topics live in the process, and a mempubsub subscription
		// sees only what is sent after it exists: the bench makes the
		// subscription, pre-fills it, and hands the host the very driver
		// the mem:// driver would build over it.
		trigger = functions.SubscriptionTrigger("mem://bench")
		j.memTopic = mempubsub.NewTopic()
		j.memPoison = mempubsub.NewTopic()
		j.memSub = mempubsub.NewSubscription(j.memTopic, 10*time.Minute)
		if err := prefillMem(ctx, j.memTopic, s.Prefill); err != nil {
			return err
		}
		open = func(context.Context, *runtime.FunctionConfig) (triggers.Driver, error) {
			return pubsub.New(pubsub.Options{
				Subscription: j.memSub, Topic: j.memTopic, Poison: j.memPoison,
				Name: "bench", PoisonName: "bench-poison",
				Owned: []interface{ Shutdown(context.Context) error }{j.memSub, j.memTopic, j.memPoison},
			}), nil
		}
	case proto.JobhostMemQueue:
		// The queue a memqueue://bench trigger reads, pre-filled here.
		trigger = functions.SubscriptionTrigger("memqueue://bench")
		target = "memqueue://bench"
		q := memqueue.Default.Queue("bench")
		for i := range s.Prefill {
			q.Send(workload.Body(i, time.Time{}), nil)
		}
	default:
		return fmt.Errorf("jobhost: unknown system %q", s.System)
	}
	if s.Batch > 0 {
		functions.AddBatch(reg, "Bench", trigger, func(ctx context.Context, in []workload.Order, _ []*triggers.Message) error {
			for i := range in {
				rec.Record(&in[i])
			}
			return nil
		}, functions.MaxBatchSize(s.Batch))
	} else {
		functions.Add(reg, "Bench", trigger, func(ctx context.Context, o workload.Order, m *triggers.Message) error {
			rec.Record(&o)
			return nil
		})
	}

	cfg := runtime.DefaultConfig()
	for _, q := range []*runtime.QueueSettings{&cfg.Queues, &cfg.PubSub} {
		q.BatchSize = s.BatchSize
		q.NewBatchThreshold = s.Threshold
		if s.MaxPolling > 0 {
			q.MaxPollingInterval = s.MaxPolling
		}
	}
	cfg.Queues.MessageEncoding = bindings.Base64 // the default, stated
	cfg.PubSub.MessageEncoding = bindings.None   // the default, stated
	cfg.ShutdownTimeout = 10 * time.Second
	if s.LogLevel != "" {
		cfg.LogLevels = map[string]string{"Function": s.LogLevel}
	}
	logs, err := runtime.NewLogs(runtime.LogOptions{Format: cfg.LogFormat, Levels: cfg.LogLevels, Output: j.sink})
	if err != nil {
		return err
	}
	var store operations.Store
	if s.Load != "" {
		if target == "" {
			return fmt.Errorf("jobhost: load %q needs memqueue:// or a Storage Queue", s.Load)
		}
		if store, err = j.prepareLoad(ctx, cfg); err != nil {
			return err
		}
	}
	j.reg = reg
	appSettings := runtime.NewAppSettings(settings)
	j.host, err = runtime.New(runtime.Options{Registry: reg, Config: cfg, Settings: appSettings,
		Logs: logs, Open: open, Operations: store})
	if err != nil || s.Load == "" {
		return err
	}
	return j.runLoadHost(ctx, cfg, appSettings, target)
}

func (j *jobhost) start(ctx context.Context) error {
	if j.spec.Load != "" && j.done != nil {
		// The host runs since prepare: GO starts the load.
		j.startLoad(ctx)
		return nil
	}
	ctx, j.cancel = context.WithCancel(ctx)
	j.done = make(chan error, 1)
	go func() { j.done <- j.host.Run(ctx) }()
	return nil
}

func (j *jobhost) stop() error {
	j.gen.stop()
	j.cancel()
	err := <-j.done
	if j.client != nil {
		j.client.Close()
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
