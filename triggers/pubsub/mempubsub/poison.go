package mempubsub

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	gcpubsub "gocloud.dev/pubsub"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// A mem:// topic keeps nothing for a subscription opened after a message
// was sent, so the poison topic is read by a collector: a subscription of
// the process, opened when the first trigger poisoning to that topic
// opens, that takes every poisoned message into a store in memory (and
// acks it). The poison administration works on the store. It is per
// process: messages poisoned in another process, or before any trigger
// using the poison topic opened here, are not in it.
var (
	storesMu sync.Mutex
	stores   = map[string]*store{} // by poison topic URL
)

// store holds the messages the collector of one poison topic took.
type store struct {
	mu   sync.Mutex
	seq  uint64
	msgs []*entry // in arrival order
}

// entry is one collected poison message.
type entry struct {
	seq  uint64
	body []byte
	md   map[string]string
	at   time.Time
	held bool
}

// collect returns the store of poison topic URL poison, subscribing its
// collector first if there is none. The collector runs as long as the
// process: mem:// topics do too.
func collect(ctx context.Context, poison string) (*store, error) {
	storesMu.Lock()
	defer storesMu.Unlock()
	if s := stores[poison]; s != nil {
		return s, nil
	}
	// The topic must exist before its subscription; opening it creates it
	// (process-wide, left open as the drivers leave it).
	if _, err := gcpubsub.OpenTopic(ctx, poison); err != nil {
		return nil, err
	}
	sub, err := gcpubsub.OpenSubscription(ctx, poison)
	if err != nil {
		return nil, err
	}
	s := &store{}
	stores[poison] = s
	go s.run(sub)
	return s, nil
}

// run takes every message of sub into s.
func (s *store) run(sub *gcpubsub.Subscription) {
	for {
		m, err := sub.Receive(context.Background())
		if err != nil {
			return
		}
		s.mu.Lock()
		s.seq++
		s.msgs = append(s.msgs, &entry{seq: s.seq, body: m.Body, md: maps.Clone(m.Metadata), at: time.Now()})
		s.mu.Unlock()
		m.Ack()
	}
}

// prepare subscribes the collector of the trigger's poison topic (a
// pubsub.Kind Prepare).
func prepare(ctx context.Context, _ *url.URL, e pubsub.Endpoints, _ triggers.OpenOptions) error {
	_, err := collect(ctx, e.Poison)
	return err
}

// openPoison opens the backend on the store of e's poison topic (a
// pubsub.Kind Poison). It fails when no trigger of this process poisons to
// that topic: the store would be empty whatever another process poisoned.
func openPoison(_ context.Context, _ *url.URL, e pubsub.Endpoints, _ triggers.OpenOptions) (pubsub.PoisonBackend, error) {
	storesMu.Lock()
	s := stores[e.Poison]
	storesMu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("no mem:// trigger of this process poisons to %s: mem:// topics live inside one process, and another process (such as the CLI) cannot reach them", e.PoisonName)
	}
	return &backend{s: s, name: "topic mem://" + e.PoisonName + " (this process)"}, nil
}

// backend is a pubsub.PoisonBackend over a store. Count and List are exact;
// Requeue and Purge remove from the store.
type backend struct {
	s    *store
	name string
}

// Poison names the poison topic.
func (b *backend) Poison() string { return b.name }

// Count returns how many messages the store holds; the topic exists.
func (b *backend) Count(context.Context) (int, bool, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return len(b.s.msgs), true, nil
}

// Fetch holds up to n messages not held, oldest first.
func (b *backend) Fetch(_ context.Context, n int) ([]*pubsub.PoisonHeld, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	var out []*pubsub.PoisonHeld
	for _, e := range b.s.msgs {
		if len(out) == n {
			break
		}
		if e.held {
			continue
		}
		e.held = true
		id := strconv.FormatUint(e.seq, 10)
		m := pubsub.PoisonMessage(id, e.body, e.md, 0, e.at)
		m.Sequence = e.seq
		out = append(out, &pubsub.PoisonHeld{Message: m, Metadata: e.md, Handle: e})
	}
	return out, nil
}

// Release unholds hs.
func (b *backend) Release(_ context.Context, hs []*pubsub.PoisonHeld) error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	for _, h := range hs {
		h.Handle.(*entry).held = false
	}
	return nil
}

// Remove deletes h from the store.
func (b *backend) Remove(_ context.Context, h *pubsub.PoisonHeld) error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	e := h.Handle.(*entry)
	b.s.msgs = slices.DeleteFunc(b.s.msgs, func(x *entry) bool { return x == e })
	return nil
}

// Close does nothing: the store lives as long as the process.
func (b *backend) Close() error { return nil }
