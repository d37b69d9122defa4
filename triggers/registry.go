package triggers

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Scheme is what a driver package registers, from its init function, for
// one URL scheme (as database/sql drivers register themselves). The host,
// outputs and the CLI open everything through it, so a program links only
// the brokers it imports.
type Scheme struct {
	// Name is the URL scheme, such as "rabbit" for rabbit://orders.
	Name string
	// Subscription opens the trigger driver of a subscription URL.
	Subscription OpenURLFunc
	// Publisher opens a publisher to the queue, subject or topic the URL
	// names, for output bindings and the CLI's send; nil when the broker
	// cannot publish. Publishers opened on the same server and connection
	// setting share one broker connection.
	Publisher OpenPublisherFunc
	// Poison opens the poison administration of a subscription URL (the
	// CLI's poison commands, the dashboard); nil when the driver has none.
	Poison OpenPoisonFunc
}

// OpenPublisherFunc opens a Publisher for a URL such as rabbit://orders.
type OpenPublisherFunc func(ctx context.Context, u *url.URL, o OpenOptions) (Publisher, error)

// OpenPoisonFunc opens the poison administration of a subscription URL.
type OpenPoisonFunc func(ctx context.Context, u *url.URL, o OpenOptions) (PoisonAdmin, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Scheme{}
)

// knownImports names the package that registers each scheme jobhost
// ships, for the error when a program uses one it did not import.
var knownImports = map[string]string{
	"rabbit":    "github.com/jobhost/jobhost/triggers/rabbitmq",
	"nats":      "github.com/jobhost/jobhost/triggers/jetstream",
	"azuresb":   "github.com/jobhost/jobhost/triggers/servicebus",
	"memqueue":  "github.com/jobhost/jobhost/triggers/memqueue",
	"mem":       "github.com/jobhost/jobhost/triggers/pubsub/mempubsub",
	"awssqs":    "github.com/jobhost/jobhost/triggers/pubsub/awssqs",
	"gcppubsub": "github.com/jobhost/jobhost/triggers/pubsub/gcppubsub",
	"kafka":     "github.com/jobhost/jobhost/triggers/pubsub/kafka",
	"postgres":  "github.com/jobhost/jobhost/triggers/postgres",
	"redis":     "github.com/jobhost/jobhost/triggers/redis",
}

// AllDrivers is the package whose blank import links every driver.
const AllDrivers = "github.com/jobhost/jobhost/triggers/all"

// Register makes scheme s.Name open through s. It panics, as
// database/sql.Register does, when the name is empty, s has no
// Subscription opener, or the scheme is already registered: each is a
// programming error found at start.
func Register(s Scheme) {
	if s.Name == "" || s.Subscription == nil {
		panic("triggers: Register needs a scheme name and a Subscription opener")
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[s.Name]; dup {
		panic("triggers: scheme " + s.Name + " registered twice")
	}
	registry[s.Name] = s
}

// Replace registers s in place of whatever is registered for s.Name (for
// tests and programs that wrap a driver) and returns a function restoring
// the previous registration.
func Replace(s Scheme) (restore func()) {
	registryMu.Lock()
	defer registryMu.Unlock()
	old, had := registry[s.Name]
	registry[s.Name] = s
	return func() {
		registryMu.Lock()
		defer registryMu.Unlock()
		if had {
			registry[s.Name] = old
		} else {
			delete(registry, s.Name)
		}
	}
}

// UnknownSchemeError is returned by Lookup for a scheme no linked package
// registered.
type UnknownSchemeError struct {
	// Scheme is the scheme asked for.
	Scheme string
	// Import is the package to import for it; empty when jobhost ships no
	// driver for it.
	Import string
	// Registered lists the schemes that are linked.
	Registered []string
}

func (e *UnknownSchemeError) Error() string {
	known := "none"
	if len(e.Registered) > 0 {
		known = strings.Join(e.Registered, ", ")
	}
	if e.Import != "" {
		return fmt.Sprintf("the %s:// driver is not linked into this program: add import _ %q (or _ %q for every driver); linked: %s",
			e.Scheme, e.Import, AllDrivers, known)
	}
	return fmt.Sprintf("unknown scheme %q (linked: %s)", e.Scheme, known)
}

// Lookup returns the registration of scheme, or an *UnknownSchemeError
// naming the import that would provide it.
func Lookup(scheme string) (Scheme, error) {
	registryMu.RLock()
	s, ok := registry[scheme]
	registryMu.RUnlock()
	if ok {
		return s, nil
	}
	return Scheme{}, &UnknownSchemeError{Scheme: scheme, Import: knownImports[scheme], Registered: Registered()}
}

// Registered returns the registered scheme names, sorted.
func Registered() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return slices.Sorted(maps.Keys(registry))
}
