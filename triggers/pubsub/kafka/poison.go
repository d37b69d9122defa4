package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// PoisonGroup is the consumer group whose committed offsets are the poison
// administration's cursor on a poison topic. Kafka cannot delete one
// record, so "removed from poison" means "behind this group's cursor":
// Requeue and Purge advance it, the records stay in the topic until its
// retention drops them, and other readers of the topic still see them.
const PoisonGroup = "jobhost-poison"

const (
	// idleRead is how long reading a partition waits for its next record
	// before taking the partition as read to its end (a gap left by
	// compaction or a transaction marker).
	idleRead = 5 * time.Second
	// metadataPrefix starts the commit metadata listing the offsets
	// removed ahead of the cursor.
	metadataPrefix = "jobhost-removed:"
	// maxMetadata bounds that list (Kafka's offset.metadata.max.bytes is
	// 4096 by default).
	maxMetadata = 3500
)

// errTooManyAhead is returned by Remove when the cursor cannot record one
// more removal ahead of it.
var errTooManyAhead = errors.New("too many messages requeued or purged out of order ahead of the cursor: requeue or purge the oldest first")

// openPoison opens the poison administration backend of e (a pubsub.Kind
// Poison): a sarama client on the brokers from the app settings.
func openPoison(_ context.Context, _ *url.URL, e pubsub.Endpoints, o triggers.OpenOptions) (pubsub.PoisonBackend, error) {
	brokers, ok := triggers.LookupSetting(o.Lookup, o.Connection, BrokersSetting)
	if !ok {
		return nil, fmt.Errorf("kafka: no brokers: set %s", cmp.Or(o.Connection, BrokersSetting))
	}
	c := Config()
	c.Metadata.AllowAutoTopicCreation = false // a missing poison topic is "nothing poisoned"
	c.Metadata.Retry.Max = 1
	c.Consumer.Return.Errors = true
	client, err := sarama.NewClient(strings.Split(brokers, ","), c)
	if err != nil {
		return nil, err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return &backend{client: client, consumer: consumer, topic: e.PoisonName}, nil
}

// backend is the pubsub.PoisonBackend of a poison topic: it reads records
// by offset from the PoisonGroup's cursor, without joining the group, and
// commits the cursor (and the offsets removed ahead of it, in the commit
// metadata) after each removal. Count is exact on a plain topic (one
// written only by producers, like jobhost's poison copies); on a compacted
// or transactional one it counts the offsets, gaps included.
type backend struct {
	client   sarama.Client
	consumer sarama.Consumer
	topic    string
	parts    []*part // the operation's view; nil between operations
	held     int
}

// part is one partition of the poison topic.
type part struct {
	id      int32
	cursor  int64 // first offset not removed
	newest  int64 // the offset the next record will get
	next    int64 // the next offset Fetch reads
	removed map[int64]bool
}

// Poison names the poison topic.
func (b *backend) Poison() string { return "topic " + b.topic + " (cursor: group " + PoisonGroup + ")" }

// load reads the partitions, their offsets and the cursor; exists is false
// when the topic does not exist.
func (b *backend) load() (parts []*part, exists bool, err error) {
	ids, err := b.client.Partitions(b.topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	coord, err := b.client.Coordinator(PoisonGroup)
	if err != nil {
		return nil, true, fmt.Errorf("find the coordinator of group %s: %w", PoisonGroup, err)
	}
	req := &sarama.OffsetFetchRequest{Version: 1, ConsumerGroup: PoisonGroup}
	for _, id := range ids {
		req.AddPartition(b.topic, id)
	}
	resp, err := coord.FetchOffset(req)
	if err != nil {
		return nil, true, fmt.Errorf("fetch the cursor of group %s: %w", PoisonGroup, err)
	}
	for _, id := range ids {
		oldest, err := b.client.GetOffset(b.topic, id, sarama.OffsetOldest)
		if err != nil {
			return nil, true, err
		}
		newest, err := b.client.GetOffset(b.topic, id, sarama.OffsetNewest)
		if err != nil {
			return nil, true, err
		}
		p := &part{id: id, cursor: oldest, newest: newest, removed: map[int64]bool{}}
		if blk := resp.GetBlock(b.topic, id); blk != nil {
			if !errors.Is(blk.Err, sarama.ErrNoError) {
				return nil, true, fmt.Errorf("fetch the cursor of group %s: %w", PoisonGroup, blk.Err)
			}
			if blk.Offset > p.cursor {
				p.cursor = min(blk.Offset, newest)
			}
			for _, s := range strings.Split(strings.TrimPrefix(blk.Metadata, metadataPrefix), ",") {
				if o, err := strconv.ParseInt(s, 10, 64); err == nil && o >= p.cursor && o < newest {
					p.removed[o] = true
				}
			}
		}
		p.next = p.cursor
		parts = append(parts, p)
	}
	return parts, true, nil
}

// Count adds up, per partition, the offsets from the cursor to the end
// that were not removed ahead of it.
func (b *backend) Count(context.Context) (int, bool, error) {
	parts, exists, err := b.load()
	if err != nil || !exists {
		return 0, exists, err
	}
	n := 0
	for _, p := range parts {
		n += int(p.newest-p.cursor) - len(p.removed)
	}
	return n, true, nil
}

// Fetch reads up to n records that are not removed, partition by
// partition, from where the operation's previous Fetch stopped. Nothing is
// committed: reading removes nothing, and other readers are not held off
// (Kafka cannot hide a record).
func (b *backend) Fetch(ctx context.Context, n int) ([]*pubsub.PoisonHeld, error) {
	if b.parts == nil {
		parts, exists, err := b.load()
		if err != nil || !exists {
			return nil, err
		}
		b.parts = parts
	}
	var out []*pubsub.PoisonHeld
	for _, p := range b.parts {
		if len(out) == n {
			break
		}
		hs, err := b.read(ctx, p, n-len(out))
		out = append(out, hs...)
		if err != nil {
			b.held += len(out)
			return out, err
		}
	}
	b.held += len(out)
	return out, nil
}

// read reads up to n records of p from p.next on.
func (b *backend) read(ctx context.Context, p *part, n int) ([]*pubsub.PoisonHeld, error) {
	if p.next >= p.newest {
		return nil, nil
	}
	pc, err := b.consumer.ConsumePartition(b.topic, p.id, p.next)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	var out []*pubsub.PoisonHeld
	idle := time.NewTimer(idleRead)
	defer idle.Stop()
	for len(out) < n && p.next < p.newest {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case err := <-pc.Errors():
			return out, err
		case <-idle.C:
			p.next = p.newest // a gap at the end: nothing more to read
			return out, nil
		case m := <-pc.Messages():
			idle.Reset(idleRead)
			if m.Offset >= p.newest {
				p.next = p.newest
				return out, nil
			}
			p.next = m.Offset + 1
			if p.removed[m.Offset] || m.Offset < p.cursor {
				continue
			}
			md := make(map[string]string, len(m.Headers))
			for _, h := range m.Headers {
				if h != nil {
					md[string(h.Key)] = string(h.Value)
				}
			}
			var at time.Time
			if !m.Timestamp.IsZero() && m.Timestamp.Unix() > 0 {
				at = m.Timestamp
			}
			pm := pubsub.PoisonMessage(fmt.Sprintf("%d:%d", p.id, m.Offset), m.Value, md, 0, at)
			out = append(out, &pubsub.PoisonHeld{Message: pm, Metadata: md, Handle: [2]int64{int64(p.id), m.Offset}})
		}
	}
	return out, nil
}

// Release ends the hold of hs: nothing was committed for them. Once the
// operation holds nothing, the next Fetch reads afresh from the cursor.
func (b *backend) Release(_ context.Context, hs []*pubsub.PoisonHeld) error {
	b.done(len(hs))
	return nil
}

func (b *backend) done(n int) {
	if b.held -= n; b.held <= 0 {
		b.held, b.parts = 0, nil
	}
}

// Remove moves the cursor past h (and past the offsets removed ahead of
// it, once they are next), or, when records before h remain, records h's
// offset in the commit metadata; either way it commits at once.
func (b *backend) Remove(_ context.Context, h *pubsub.PoisonHeld) error {
	at := h.Handle.([2]int64)
	i := slices.IndexFunc(b.parts, func(p *part) bool { return int64(p.id) == at[0] })
	if i < 0 {
		return fmt.Errorf("partition %d: not read by this operation", at[0])
	}
	p := b.parts[i]
	cursor, removed := p.cursor, map[int64]bool{at[1]: true}
	for o := range p.removed {
		removed[o] = true
	}
	for removed[cursor] {
		delete(removed, cursor)
		cursor++
	}
	offs := make([]string, 0, len(removed))
	for _, o := range slices.Sorted(maps.Keys(removed)) {
		offs = append(offs, strconv.FormatInt(o, 10))
	}
	meta := ""
	if len(offs) > 0 {
		meta = metadataPrefix + strings.Join(offs, ",")
	}
	if len(meta) > maxMetadata {
		return errTooManyAhead
	}
	if err := b.commit(p.id, cursor, meta); err != nil {
		return err
	}
	p.cursor, p.removed = cursor, removed
	b.done(1)
	return nil
}

// commit stores cursor and meta for partition id as the PoisonGroup's
// offset, as a simple (group-less) commit.
func (b *backend) commit(id int32, cursor int64, meta string) error {
	coord, err := b.client.Coordinator(PoisonGroup)
	if err != nil {
		return fmt.Errorf("find the coordinator of group %s: %w", PoisonGroup, err)
	}
	req := &sarama.OffsetCommitRequest{Version: 2, ConsumerGroup: PoisonGroup, ConsumerGroupGeneration: -1, RetentionTime: -1}
	req.AddBlock(b.topic, id, cursor, 0, meta)
	resp, err := coord.CommitOffset(req)
	if err != nil {
		return fmt.Errorf("commit the cursor of group %s: %w", PoisonGroup, err)
	}
	if kerr := resp.Errors[b.topic][id]; !errors.Is(kerr, sarama.ErrNoError) {
		return fmt.Errorf("commit the cursor of group %s: %w", PoisonGroup, kerr)
	}
	return nil
}

// Close closes the consumer and the client.
func (b *backend) Close() error {
	return errors.Join(b.consumer.Close(), b.client.Close())
}
