// Package proto is what the bench binary and its child processes say to each
// other. The parent starts `bench child` with a Spec in the environment
// (BENCH_SPEC, JSON). The child prepares the system (connections, in-memory
// pre-fill), prints READY, waits for GO on stdin, then consumes. It prints
// PROGRESS <n> every ProgressEvery, DONE when it has recorded Target
// messages, and stops on STOP (stdin) or after DONE; it then prints
// RESULT <json> and exits. Everything the child measures about itself is in
// Result; the parent adds the child's rusage (CPU, peak RSS) from wait4.
package proto

import "time"

// EnvSpec names the environment variable carrying the Spec.
const EnvSpec = "BENCH_SPEC"

// Lines the child prints on stdout.
const (
	Ready    = "READY"
	Progress = "PROGRESS"
	Done     = "DONE"
	Result   = "RESULT"
)

// Commands the parent writes on stdin.
const (
	Go   = "GO"
	Stop = "STOP"
)

// Systems.
const (
	JobhostAzure    = "jobhost-azure"    // runtime over the real azurequeue driver
	PlainAzqueue    = "azqueue-loop"     // plain azqueue dequeue/delete loop
	JobhostMem      = "jobhost-mem"      // runtime over the mem:// (gocloud mempubsub) driver
	JobhostMemQueue = "jobhost-memqueue" // runtime over jobhost's own in-process queue (memqueue://)
	WatermillGoChan = "watermill-gochan" // Watermill router over GoChannel
	GocloudMem      = "gocloud-mem"      // plain mempubsub Receive loop
	BareDecode      = "bare-decode"      // decode only: the floor
	JobhostRabbit   = "jobhost-rabbit"   // runtime over rabbit://
	WatermillAMQP   = "watermill-amqp"   // Watermill router over watermill-amqp v3
	GocloudRabbit   = "gocloud-rabbit"   // plain rabbitpubsub Receive loop
	JobhostNATS     = "jobhost-nats"     // runtime over nats:// (JetStream)
	WatermillNATS   = "watermill-nats"   // Watermill router over watermill-nats v2 (JetStream)
	JobhostRedis    = "jobhost-redis"    // runtime over redis:// (Redis Streams, consumer group)
	Asynq           = "asynq"            // asynq server (Redis)
	JobhostPostgres = "jobhost-postgres" // runtime over postgres:// (its queue table)
	River           = "river"            // River client (PostgreSQL, riverpgxv5)
)

// Spec tells a child what to run.
type Spec struct {
	System      string `json:"system"`
	Concurrency int    `json:"concurrency"`
	// BatchSize and Threshold are jobhost's batchSize and newBatchThreshold
	// (and the plain loops' batch size).
	BatchSize int `json:"batchSize"`
	// Batch > 0 registers jobhost's function as a batch function with
	// that maxBatchSize.
	Batch     int `json:"batch,omitempty"`
	Threshold int `json:"threshold"`
	// MaxPolling is jobhost's maxPollingInterval (0: default, 1 min).
	MaxPolling time.Duration `json:"maxPolling"`
	// Prefetch is the plain gocloud rabbitpubsub loop's prefetch_count (0:
	// rabbitpubsub's default, unbounded).
	Prefetch int `json:"prefetch,omitempty"`
	// EmptySleep is the plain azqueue loop's wait after an empty dequeue.
	EmptySleep time.Duration `json:"emptySleep"`
	// Target > 0: print DONE after that many messages. MaxID bounds the
	// ids tracked for loss/duplicate checks.
	Target int64 `json:"target"`
	MaxID  int64 `json:"maxId"`
	// Prefill is the number of messages an in-memory system publishes to
	// itself before READY.
	Prefill int64 `json:"prefill"`
	// Latency keeps enqueue→invocation latencies; IDs returns the bitmap.
	Latency bool `json:"latency"`
	IDs     bool `json:"ids"`
	// ProgressEvery > 0 prints PROGRESS that often.
	ProgressEvery time.Duration `json:"progressEvery"`

	// Where the messages are.
	AzureConn string `json:"azureConn,omitempty"`
	Queue     string `json:"queue,omitempty"` // Storage Queue, RabbitMQ queue
	RabbitURL string `json:"rabbitUrl,omitempty"`
	NATSURL   string `json:"natsUrl,omitempty"`
	Stream    string `json:"stream,omitempty"`
	Subject   string `json:"subject,omitempty"`
	// RedisURL is the Redis server (redis://host:port/db) jobhost's
	// REDIS_SERVER_URL and asynq's connection use; PostgresURL the DSN of
	// jobhost's JOBHOST_POSTGRES_URL and River's pool. Schema is River's
	// schema (where rivermigrate put its tables).
	RedisURL    string `json:"redisUrl,omitempty"`
	PostgresURL string `json:"postgresUrl,omitempty"`
	Schema      string `json:"schema,omitempty"`
	// TaskCheck is asynq's TaskCheckInterval (0: its default, 1 s);
	// FetchCooldown and FetchPoll are River's FetchCooldown and
	// FetchPollInterval (0: its defaults, 100 ms and 1 s).
	TaskCheck     time.Duration `json:"taskCheck,omitempty"`
	FetchCooldown time.Duration `json:"fetchCooldown,omitempty"`
	FetchPoll     time.Duration `json:"fetchPoll,omitempty"`

	// LogLevel of jobhost's Function.* categories ("" = Information, the
	// default). Logs are encoded as usual and written to a discarding sink
	// that keeps warnings and errors.
	LogLevel string `json:"logLevel,omitempty"`
	// TriggerQuery is added to jobhost's rabbit:// or nats:// trigger URL
	// (ack_delay=0, ack=sync: the drivers' acks as they were before they
	// stopped waiting for them).
	TriggerQuery string `json:"triggerQuery,omitempty"`
	// CPUProfile, when set, is a file the child writes a pprof CPU profile
	// of the measured window to.
	CPUProfile string `json:"cpuProfile,omitempty"`

	// Load, for jobhost on memqueue:// or a Storage Queue, makes the child
	// generate its own messages after GO instead of consuming a pre-filled
	// queue: LoadSubmit POSTs Target operations to the host's own API
	// (jobhost.http.listen on a loopback port), LoadSend sends Target
	// messages with client.Send; Concurrency requests at a time either
	// way. The host runs (API up, store warmed) before READY and has an
	// operations store wrapped in a counter in both cases: TableConn names
	// Azurite's table service for the table store, "" means memstore.
	Load      string `json:"load,omitempty"`
	TableConn string `json:"tableConn,omitempty"`
}

// Loads (Spec.Load).
const (
	LoadSubmit = "submit" // POST /api/operations/{function}, record Succeeded
	LoadSend   = "send"   // client.Send to the function's queue
)

// OpsResult is what a Load child counted: the store calls the host and
// its API made, and the load generator's own figures.
type OpsResult struct {
	// Sent is how many requests (POSTs or Sends) succeeded; SendErrors
	// how many failed (FirstSendError is the first).
	Sent           int64  `json:"sent"`
	SendErrors     int64  `json:"sendErrors"`
	FirstSendError string `json:"firstSendError,omitempty"`
	// Store writes: Creates, and Updates that changed the record
	// (Succeeded of them made it Succeeded).
	Creates   int64 `json:"creates"`
	Updates   int64 `json:"updates"`
	Succeeded int64 `json:"succeeded"`
	// Store reads: Gets, Lists, and the records Update read to apply its
	// change (one per change call; more than one per Update after a
	// conflicting write).
	Gets        int64 `json:"gets"`
	Lists       int64 `json:"lists"`
	UpdateReads int64 `json:"updateReads"`
	// UpdateCalls is how many Updates were made (changed or not).
	UpdateCalls int64 `json:"updateCalls"`
	// CreatedToSucceeded is each Succeeded record's EndTime - CreatedOn
	// (ns), in the order they were written.
	CreatedToSucceeded []int64 `json:"createdToSucceeded,omitempty"`
}

// ChildResult is what the child measured.
type ChildResult struct {
	Processed int64 `json:"processed"`
	Dups      int64 `json:"dups"`
	// Unix nanoseconds: GO received, first and last message recorded, the
	// end of the measured window (DONE or STOP).
	GoAt    int64 `json:"goAt"`
	FirstAt int64 `json:"firstAt"`
	LastAt  int64 `json:"lastAt"`
	EndAt   int64 `json:"endAt"`
	// CPU of the child during the window (getrusage RUSAGE_SELF deltas).
	UserSec float64 `json:"userSec"`
	SysSec  float64 `json:"sysSec"`
	// PeakRSSKB is the child's VmHWM (/proc/self/status) at the end: its
	// own peak RSS. (wait4's maxrss of a forked-and-exec'd child also
	// counts the parent's RSS at fork time.)
	PeakRSSKB int64 `json:"peakRssKB"`
	// Bitmap of ids seen (IDs), little-endian 64-bit words.
	Bitmap []uint64 `json:"bitmap,omitempty"`
	// Latencies (ns) when Latency, by message id; -1 for ids not seen.
	Latencies []int64 `json:"latencies,omitempty"`
	// Ops is set by Load children.
	Ops *OpsResult `json:"ops,omitempty"`
	// Warnings are warning and error log lines (capped).
	Warnings []string `json:"warnings,omitempty"`
	Error    string   `json:"error,omitempty"`
}
