package runtime

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/memqueue"
	"github.com/jobhost/jobhost/triggers/pubsub"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/servicebus"
)

var (
	schemesMu sync.RWMutex
	schemes   = map[string]triggers.OpenURLFunc{}
)

func init() {
	for _, s := range pubsub.Schemes {
		schemes[s] = pubsub.OpenURL
	}
	schemes[rabbitmq.Scheme] = rabbitmq.OpenURL
	schemes["azuresb"] = servicebus.OpenURL
	schemes["nats"] = jetstream.OpenURL
	schemes[memqueue.Scheme] = memqueue.OpenURL
}

// RegisterScheme makes URL triggers with scheme open through open,
// replacing any driver registered for it. Call it before New.
func RegisterScheme(scheme string, open triggers.OpenURLFunc) {
	schemesMu.Lock()
	defer schemesMu.Unlock()
	schemes[scheme] = open
}

func lookupScheme(scheme string) (triggers.OpenURLFunc, bool) {
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	f, ok := schemes[scheme]
	return f, ok
}

func schemeNames() []string {
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	return slices.Sorted(maps.Keys(schemes))
}

// openURL opens a URL trigger's driver.
func openURL(ctx context.Context, fc *FunctionConfig, settings *AppSettings) (triggers.Driver, error) {
	open, _ := lookupScheme(fc.URL.Scheme)
	u := fc.URL
	if u.Scheme == "azuresb" && fc.Queues.MaxRenewal > 0 && !u.Query().Has("max_auto_lock_renewal_duration") {
		// extensions.serviceBus.maxAutoLockRenewalDuration reaches the driver.
		c := *u
		q := c.Query()
		q.Set("max_auto_lock_renewal_duration", fc.Queues.MaxRenewal.String())
		c.RawQuery = q.Encode()
		u = &c
	}
	return open(ctx, u, triggers.OpenOptions{
		Lookup:          settings.Lookup,
		Connection:      fc.Connection,
		Prefetch:        fc.Queues.BatchSize + fc.Queues.NewBatchThreshold,
		PoisonName:      fc.Poison,
		CreateIfMissing: fc.Queues.CreateQueues,
	})
}

// OpenURL opens the driver of a subscription URL the way the host would
// for a function bound to it (the CLI's send uses it). connection names
// the app setting with the server URL; empty means the driver's default.
// create lets the driver create a missing queue or stream.
func OpenURL(ctx context.Context, u *url.URL, connection string, create bool, settings *AppSettings) (triggers.Driver, error) {
	if _, ok := lookupScheme(u.Scheme); !ok {
		return nil, fmt.Errorf("unknown trigger scheme %q (known: %s)", u.Scheme, strings.Join(schemeNames(), ", "))
	}
	fc := &FunctionConfig{URL: u, Connection: connection, Queues: QueueSettings{BatchSize: 1, CreateQueues: create}}
	return openURL(ctx, fc, settings)
}
