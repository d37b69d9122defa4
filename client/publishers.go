package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// MaxPublishers bounds the publishers a client keeps open: targets can come
// from expressions ({customer}), so the least recently used is closed when
// a new one would pass the bound.
const MaxPublishers = 256

// publishers keeps one publisher per (connection, target), opened on first
// use.
type publishers struct {
	c *Client

	mu     sync.Mutex
	m      map[string]*entry
	tick   uint64 // orders uses, for eviction
	closed bool   // by close: opening fails
}

func newPublishers(c *Client) *publishers {
	return &publishers{c: c, m: map[string]*entry{}}
}

// entry is the publisher of one target, opened under its own lock (never
// the client-wide one: dialling a broker must not hold up sends to other
// targets).
type entry struct {
	mu      sync.Mutex
	pub     triggers.Publisher // nil until opened
	storage *azurequeue.Driver
	created bool // the Storage Queue exists (a failed create is tried again)

	// Guarded by publishers.mu:
	used    uint64 // publishers.tick at the last use
	users   int    // sends under way
	evicted bool   // closed by the last user once users falls to 0
}

// acquire returns the entry of key, marked in use; release it after. When
// a new entry would pass MaxPublishers, the least recently used one is
// dropped: closed now if no send uses it, else by its last user.
func (ps *publishers) acquire(key string) *entry {
	ps.mu.Lock()
	ps.tick++
	e, ok := ps.m[key]
	var evicted *entry
	if !ok {
		if len(ps.m) >= MaxPublishers {
			evicted = ps.evictLocked()
		}
		e = &entry{}
		ps.m[key] = e
	}
	e.used = ps.tick
	e.users++
	ps.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
	return e
}

// evictLocked drops the least recently used entry and returns it if no
// send uses it (the caller closes it); otherwise its last user closes it.
func (ps *publishers) evictLocked() *entry {
	var oldKey string
	var old *entry
	for k, e := range ps.m {
		if old == nil || e.used < old.used {
			oldKey, old = k, e
		}
	}
	if old == nil {
		return nil
	}
	delete(ps.m, oldKey)
	old.evicted = true
	if old.users == 0 {
		return old
	}
	return nil
}

func (ps *publishers) release(e *entry) {
	ps.mu.Lock()
	e.users--
	closeIt := e.evicted && e.users == 0
	ps.mu.Unlock()
	if closeIt {
		e.close()
	}
}

// close closes every publisher.
func (ps *publishers) close() error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.closed = true
	var errs []error
	for k, e := range ps.m {
		errs = append(errs, e.close())
		delete(ps.m, k)
	}
	return errors.Join(errs...)
}

func (e *entry) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pub == nil {
		return nil
	}
	err := e.pub.Close()
	e.pub, e.storage, e.created = nil, nil, false
	return err
}

// open returns e's publisher for t, opening it on first use and, when
// create is set, creating a missing Storage Queue (once it succeeds). A
// failed open or create is not kept: the next send tries again.
func (ps *publishers) open(ctx context.Context, e *entry, t Target, create bool) (triggers.Publisher, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ps.mu.Lock()
	closed := ps.closed
	ps.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if e.pub == nil {
		if t.IsStorage() {
			svc, err := ps.c.storageClient(t.connection)
			if err != nil {
				return nil, err
			}
			e.storage = azurequeue.New(svc, t.name, azurequeue.Options{CreateIfMissing: true})
			e.pub = e.storage
		} else {
			pub, err := openPublisher(ctx, t, ps.c.lookup)
			if err != nil {
				return nil, err
			}
			e.pub = pub
		}
	}
	if create && e.storage != nil && !e.created {
		if err := e.storage.Create(ctx); err != nil {
			return nil, fmt.Errorf("creating queue %s: %w", t.name, err)
		}
		e.created = true
	}
	return e.pub, nil
}

// openPublisher opens a publisher to the queue, subject or topic a URL
// names through its driver's registered opener, letting the driver create
// a missing queue or stream (as outputs always have).
func openPublisher(ctx context.Context, t Target, lookup func(string) (string, bool)) (triggers.Publisher, error) {
	s, err := triggers.Lookup(t.u.Scheme)
	if err != nil {
		return nil, err
	}
	if s.Publisher == nil {
		return nil, errors.New("the " + t.u.Scheme + ":// driver cannot publish")
	}
	return s.Publisher(ctx, t.u, triggers.OpenOptions{Lookup: lookup, Connection: t.connection, Prefetch: 1, CreateIfMissing: true})
}
