package operations

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// OpenOptions are what a store opener is given.
type OpenOptions struct {
	// Lookup reads app settings (connection strings).
	Lookup func(name string) (string, bool)
	// Connection names the app setting holding the store's connection
	// string or URL ("" = the store's default: AzureWebJobsStorage for
	// tables, JOBHOST_POSTGRES_URL for PostgreSQL).
	Connection string
	// Table names the table ("" = the store's default).
	Table string
	// TimeToLive is how long records are kept (0 = DefaultTimeToLive).
	TimeToLive time.Duration
	// Migrate lets the store create or upgrade its schema.
	Migrate bool
}

// Opener opens a store.
type Opener func(ctx context.Context, o OpenOptions) (Store, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// knownStores names the package that registers each store kind, for the
// error when it is not linked.
var knownStores = map[string]string{
	"table":    "github.com/jobhost/jobhost/operations/tablestore",
	"postgres": "github.com/jobhost/jobhost/operations/pgstore",
	"memory":   "github.com/jobhost/jobhost/operations/memstore",
}

// RegisterStore makes a store kind available to OpenStore; store packages
// call it from init. Registering a kind twice panics.
func RegisterStore(kind string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[kind]; dup {
		panic("operations: store " + kind + " registered twice")
	}
	registry[kind] = open
}

// StoreKinds returns the registered kinds, sorted.
func StoreKinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// OpenStore opens a store of a registered kind. An unknown kind is an error
// naming the import that provides it.
func OpenStore(ctx context.Context, kind string, o OpenOptions) (Store, error) {
	registryMu.RLock()
	open, ok := registry[kind]
	registryMu.RUnlock()
	if !ok {
		if pkg, known := knownStores[kind]; known {
			return nil, fmt.Errorf("the %s operations store is not linked into this program: import _ %q", kind, pkg)
		}
		return nil, fmt.Errorf("unknown operations store %q (one of %s)", kind, strings.Join(sortedKnown(), ", "))
	}
	return open(ctx, o)
}

func sortedKnown() []string {
	out := make([]string, 0, len(knownStores))
	for k := range knownStores {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
