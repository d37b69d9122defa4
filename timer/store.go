package timer

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Store is where a host keeps its timers' statuses and leases: one value
// serving both contracts.
type Store interface {
	Locker
	StatusStore
}

// OpenStoreFunc opens a store kind's Store for hostID. connection names the
// app setting (or Storage connection) holding the store's address; lookup
// reads app settings.
type OpenStoreFunc func(ctx context.Context, connection string, lookup func(string) (string, bool), hostID string) (Store, error)

var (
	storesMu sync.Mutex
	stores   = map[string]OpenStoreFunc{
		"memory": func(context.Context, string, func(string) (string, bool), string) (Store, error) {
			return NewMemoryStore(), nil
		},
	}
)

// RegisterStore makes a store kind openable by OpenStore ("blob" by
// timer/timerblob, "postgres" by timer/timerpg, "memory" built in). A
// kind registered twice keeps the last.
func RegisterStore(kind string, open OpenStoreFunc) {
	storesMu.Lock()
	defer storesMu.Unlock()
	stores[kind] = open
}

// OpenStore opens the Store of kind for hostID.
func OpenStore(ctx context.Context, kind, connection string, lookup func(string) (string, bool), hostID string) (Store, error) {
	storesMu.Lock()
	open, ok := stores[kind]
	var kinds []string
	for k := range stores {
		kinds = append(kinds, k)
	}
	storesMu.Unlock()
	if !ok {
		sort.Strings(kinds)
		pkg := map[string]string{"blob": "timerblob", "postgres": "timerpg"}[kind]
		if pkg == "" {
			return nil, fmt.Errorf("timer store %q does not exist (have %s)", kind, strings.Join(kinds, ", "))
		}
		return nil, fmt.Errorf("timer store %q is not linked into this binary: add import _ \"github.com/jobhost/jobhost/timer/%s\" to its main package (cmd/jobhost has it)", kind, pkg)
	}
	return open(ctx, connection, lookup, hostID)
}

// memoryStore is the in-process Store: statuses and leases for one
// process only.
type memoryStore struct {
	*MemoryLocker
	*MemoryStatusStore
}

// NewMemoryStore returns a Store kept in this process: timers are not
// coordinated with other hosts, and statuses are lost at exit.
func NewMemoryStore() Store {
	return memoryStore{NewMemoryLocker(nil), &MemoryStatusStore{}}
}

// MigrateFunc creates or updates a store kind's tables.
type MigrateFunc func(ctx context.Context, connection string, lookup func(string) (string, bool)) error

var migrations = map[string]MigrateFunc{}

// RegisterMigration gives a store kind its explicit migration (timerpg's
// tables); kinds without one need none.
func RegisterMigration(kind string, m MigrateFunc) {
	storesMu.Lock()
	defer storesMu.Unlock()
	migrations[kind] = m
}

// Migrate applies kind's migration; it reports false when the kind has
// none.
func Migrate(ctx context.Context, kind, connection string, lookup func(string) (string, bool)) (bool, error) {
	storesMu.Lock()
	m, ok := migrations[kind]
	storesMu.Unlock()
	if !ok {
		return false, nil
	}
	return true, m(ctx, connection, lookup)
}
