package runtime

import (
	goruntime "runtime"
	"time"

	"github.com/jobhost/jobhost/tracing"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/webhook"
)

// QueueSettings are the effective extensions.queues settings of one function.
type QueueSettings struct {
	// BatchSize is how many messages one poll asks for (1..32, default 16).
	BatchSize int
	// NewBatchThreshold is the in-flight count at or below which the next
	// poll is made (default batchSize/2 × processors).
	NewBatchThreshold int
	// MaxDequeueCount is the number of attempts before poison (default 5).
	MaxDequeueCount int
	// MaxPollingInterval caps the idle polling backoff (default 1 min).
	MaxPollingInterval time.Duration
	// VisibilityTimeout delays a failed message's next attempt (default 0).
	VisibilityTimeout time.Duration
	// LeaseDuration is the visibility lease taken at dequeue and renewed at
	// half-lease while the function runs (default 10 min; jobhost only).
	LeaseDuration time.Duration
	// MessageEncoding is base64 (default) or none.
	MessageEncoding bindings.Encoding
	// CreateQueues creates a missing trigger queue instead of backing off
	// (default false; jobhost only).
	CreateQueues bool
	// Retry is the retry policy (nil: retry after VisibilityTimeout until
	// MaxDequeueCount).
	Retry *functions.RetryPolicy
	// MaxRenewal stops lease renewal once a message has been held this
	// long (0: renew for as long as the function runs). Service Bus's
	// maxAutoLockRenewalDuration.
	MaxRenewal time.Duration
}

// ServiceBusSettings are host.json's extensions.serviceBus, with Azure
// Functions' defaults.
type ServiceBusSettings struct {
	// MaxConcurrentCalls bounds the invocations running at once per
	// function (default 16 × processors).
	MaxConcurrentCalls int
	// PrefetchCount is the receiver's prefetch (default 0).
	PrefetchCount int
	// MaxAutoLockRenewalDuration stops lock renewal after this long
	// (default 5 min).
	MaxAutoLockRenewalDuration time.Duration
	// MaxDequeueCount is the attempts before jobhost dead-letters (default
	// 10, Service Bus's own MaxDeliveryCount default; keep it at or below
	// the entity's).
	MaxDequeueCount int
}

// Config is a loaded and validated host.json.
type Config struct {
	// Version is host.json's schema version ("2.0").
	Version string
	// FunctionTimeout limits every invocation; 0 means no limit.
	FunctionTimeout time.Duration
	// ShutdownTimeout is how long in-flight functions may run after a stop
	// signal before their contexts are cancelled (jobhost.shutdownTimeout).
	ShutdownTimeout time.Duration
	// Queues holds the host-wide extensions.queues settings. NewBatchThreshold
	// is -1 when unset (derived from each function's batch size).
	Queues QueueSettings
	// PubSub holds extensions.pubsub: the same keys, for URL triggers on
	// RabbitMQ, NATS JetStream and gocloud brokers (messageEncoding defaults
	// to none there).
	PubSub QueueSettings
	// ServiceBus holds extensions.serviceBus, for azuresb:// triggers.
	ServiceBus ServiceBusSettings
	// LogLevels maps logging.logLevel categories, in lower case and
	// otherwise as written ("function.foo"), to level names.
	LogLevels map[string]string
	// LogFormat is "json" or "console" (jobhost.logFormat).
	LogFormat string
	// Callbacks configures completion callbacks (jobhost.callbacks).
	Callbacks CallbackSettings
	// HTTP configures the host's HTTP listener (jobhost.http).
	HTTP HTTPSettings
	// Operations configures the background operation records
	// (jobhost.operations).
	Operations OperationsSettings
	// Tracing configures OpenTelemetry traces (jobhost.tracing); whether
	// they are on is the OTEL_* variables' say.
	Tracing tracing.Settings
	// Dashboard configures the dashboard on the HTTP listener
	// (jobhost.dashboard).
	Dashboard DashboardSettings
	// Timers configures the timer functions' store (jobhost.timers).
	Timers TimerSettings
	// HostID is jobhost.hostId: what hosts of one app share, so that one
	// of them fires each timer occurrence (default: the setting
	// AzureFunctionsWebHost__hostid, else WEBSITE_SITE_NAME, else the
	// executable's name).
	HostID string
	// Functions holds per-function overrides from jobhost.functions, keyed by
	// lower-cased function name.
	Functions map[string]FunctionOverrides
	// Warnings lists keys that were ignored (unknown or unsupported).
	Warnings []string
}

// FunctionOverrides are one function's settings from host.json
// jobhost.functions.<Name>: the settings a function can be given in code,
// plus Disabled. Nil fields are not set.
type FunctionOverrides struct {
	functions.Settings
	// Disabled stops the host from listening for the function.
	Disabled *bool
	// Poison names the poison destination: a Storage Queue name for a queue
	// trigger (default "<queue>-poison"), the broker's destination for a URL
	// trigger.
	Poison *string
}

// CallbackSettings are jobhost.callbacks: where completion notices may go
// and how hard the host tries.
type CallbackSettings struct {
	// AllowedHosts lists the hosts (host or host:port; "*.example.com"
	// matches subdomains) a callback may be sent to. Empty: none (SSRF).
	AllowedHosts []string
	// Timeout bounds one POST (default 10 s).
	Timeout time.Duration
	// MaxAttempts is how many times a failing POST is tried (default 3).
	MaxAttempts int
	// SigningSecret is jobhost.callbacks.signingSecret: the name of the app
	// setting whose value, one or more whsec_ secrets separated by spaces,
	// signs every callback (Standard Webhooks). "" means
	// DefaultCallbackSecretSetting (JOBHOST_CALLBACK_SECRET), which may be
	// left unset: callbacks are then unsigned. A named setting must be set.
	SigningSecret string
	// Secrets sign the callbacks; none: unsigned. LoadConfig reads them
	// from the app setting SigningSecret names; a program building its
	// Config sets them itself (webhook.ParseSecrets). They never print.
	Secrets []webhook.Secret
}

// Defaults as in the Azure Functions Storage Queues extension.
const (
	DefaultBatchSize          = 16
	DefaultMaxDequeueCount    = 5
	DefaultMaxPollingInterval = time.Minute
	DefaultLeaseDuration      = 10 * time.Minute
	DefaultShutdownTimeout    = 25 * time.Second
	// MinPollingInterval is the first backoff step and the lowest valid
	// maxPollingInterval.
	MinPollingInterval = 100 * time.Millisecond
	maxBatchSize       = 32
	maxVisibility      = 7 * 24 * time.Hour
)

// Attempts is how many attempts a message gets before it is poisoned: the
// retry policy's maxRetryCount + 1 when it sets one, else maxDequeueCount.
func (q QueueSettings) Attempts() int {
	if q.Retry != nil && q.Retry.Attempts() > 0 {
		return q.Retry.Attempts()
	}
	return q.MaxDequeueCount
}

// DefaultConfig returns the configuration used when host.json sets nothing.
func DefaultConfig() *Config {
	return &Config{
		Version:         "2.0",
		ShutdownTimeout: DefaultShutdownTimeout,
		Queues: QueueSettings{
			BatchSize:          DefaultBatchSize,
			NewBatchThreshold:  -1,
			MaxDequeueCount:    DefaultMaxDequeueCount,
			MaxPollingInterval: DefaultMaxPollingInterval,
			LeaseDuration:      DefaultLeaseDuration,
			MessageEncoding:    bindings.Base64,
		},
		PubSub: QueueSettings{
			BatchSize:          DefaultBatchSize,
			NewBatchThreshold:  -1,
			MaxDequeueCount:    DefaultMaxDequeueCount,
			MaxPollingInterval: DefaultMaxPollingInterval,
			LeaseDuration:      DefaultLeaseDuration,
			MessageEncoding:    bindings.None,
		},
		ServiceBus: ServiceBusSettings{
			MaxConcurrentCalls:         16 * goruntime.NumCPU(),
			MaxAutoLockRenewalDuration: 5 * time.Minute,
			MaxDequeueCount:            10,
		},
		Callbacks:  CallbackSettings{Timeout: 10 * time.Second, MaxAttempts: 3},
		Operations: operationsDefaults(),
		LogLevels:  map[string]string{},
		LogFormat:  "json",
		Functions:  map[string]FunctionOverrides{},
	}
}

// overlay returns q with the queue settings set in o laid over it.
func overlay(q QueueSettings, o functions.Settings) QueueSettings {
	if o.BatchSize != nil {
		q.BatchSize = *o.BatchSize
	}
	if o.NewBatchThreshold != nil {
		q.NewBatchThreshold = *o.NewBatchThreshold
	}
	if o.MaxDequeueCount != nil {
		q.MaxDequeueCount = *o.MaxDequeueCount
	}
	if o.MaxPollingInterval != nil {
		q.MaxPollingInterval = *o.MaxPollingInterval
	}
	if o.VisibilityTimeout != nil {
		q.VisibilityTimeout = *o.VisibilityTimeout
	}
	if o.LeaseDuration != nil {
		q.LeaseDuration = *o.LeaseDuration
	}
	if o.MessageEncoding != nil {
		q.MessageEncoding = *o.MessageEncoding
	}
	if o.Retry != nil {
		q.Retry = o.Retry
	}
	return q
}

// defaultThreshold is WebJobs' newBatchThreshold: batchSize/2 × processors.
func defaultThreshold(batchSize int) int {
	return batchSize / 2 * goruntime.NumCPU()
}
