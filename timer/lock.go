package timer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Locker hands out the singleton lease of a timer: the host holding a
// function's lease is the one that fires it. Leases are scoped to the host
// id the Locker was opened for (Functions' locks/{hostId}/...).
// Implementations: timerblob (a blob lease, as Functions), timerpg (a row
// with an owner and an expiry) and [MemoryLocker].
type Locker interface {
	// Acquire takes the function's lease for d. If another owner holds it
	// and it has not expired, it returns an error wrapping ErrLeaseHeld.
	Acquire(ctx context.Context, function string, d time.Duration) (Lease, error)
}

// Lease is a held singleton lease.
type Lease interface {
	// Renew extends the lease to its duration from now. If it is no
	// longer ours (it expired and someone else took it, or it was broken)
	// it returns an error wrapping ErrLeaseLost; other errors (the store
	// unreachable) also mean the caller must assume it lost the lease.
	Renew(ctx context.Context) error
	// Release gives the lease up so another host can take it at once.
	// Releasing a lease no longer held is not an error.
	Release(ctx context.Context) error
}

var (
	// ErrLeaseHeld means another owner holds the lease.
	ErrLeaseHeld = errors.New("timer: lease held by another host")
	// ErrLeaseLost means a lease is no longer held by its owner.
	ErrLeaseLost = errors.New("timer: lease lost")
)

// LockName is the name of a function's singleton lock, as Functions names
// its listener lock: "{function}.Listener".
func LockName(function string) string { return function + ".Listener" }

// NewOwnerID returns a random lease owner id (32 hex digits).
func NewOwnerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// MemoryLocker is a Locker in memory, shared by the Runners of one
// process (tests; a single-process host). Expiry follows its clock.
type MemoryLocker struct {
	clock Clock

	mu     sync.Mutex
	leases map[string]memoryLeaseState
}

type memoryLeaseState struct {
	owner   string
	expires time.Time
}

// NewMemoryLocker returns a MemoryLocker whose leases expire by clock
// (nil: the real clock).
func NewMemoryLocker(clock Clock) *MemoryLocker {
	if clock == nil {
		clock = RealClock()
	}
	return &MemoryLocker{clock: clock, leases: make(map[string]memoryLeaseState)}
}

// Acquire implements Locker.
func (m *MemoryLocker) Acquire(_ context.Context, function string, d time.Duration) (Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if st, ok := m.leases[function]; ok && now.Before(st.expires) {
		return nil, fmt.Errorf("%w: %s", ErrLeaseHeld, function)
	}
	owner := NewOwnerID()
	m.leases[function] = memoryLeaseState{owner: owner, expires: now.Add(d)}
	return &memoryLease{m: m, function: function, owner: owner, d: d}, nil
}

// Break ends the function's lease whoever holds it, as breaking a blob
// lease does (tests of lease loss).
func (m *MemoryLocker) Break(function string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leases, function)
}

type memoryLease struct {
	m        *MemoryLocker
	function string
	owner    string
	d        time.Duration
}

func (l *memoryLease) Renew(context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	st, ok := l.m.leases[l.function]
	now := l.m.clock.Now()
	if !ok || st.owner != l.owner || !now.Before(st.expires) {
		return fmt.Errorf("%w: %s", ErrLeaseLost, l.function)
	}
	l.m.leases[l.function] = memoryLeaseState{owner: l.owner, expires: now.Add(l.d)}
	return nil
}

func (l *memoryLease) Release(context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if st, ok := l.m.leases[l.function]; ok && st.owner == l.owner {
		delete(l.m.leases, l.function)
	}
	return nil
}
