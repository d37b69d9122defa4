package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
)

// PoisonAdmin administers the poison subject of one trigger
// (triggers.PoisonAdmin). The poison messages are read and deleted in the
// stream that captures the subject (DeadLetter creates "<STREAM>_POISON"
// with limits retention, where an acknowledgement does not remove a
// message): List reads them by sequence and changes nothing; Requeue
// publishes each to the trigger's subject, without jobhost's bookkeeping
// headers (Jobhost-*, X-Jobhost-*) and the server's (Nats-*), waits for
// the stream's acknowledgement, then deletes it by sequence; Purge purges
// the subject.
//
// List, Requeue and Purge act on the messages poisoned up to the last
// Count (they count first when Count was never called): messages poisoned
// since, such as requeued messages that fail again meanwhile, are left
// alone. PoisonMessage.ID is the copy's Nats-Msg-Id (the original's, or
// "<stream>:<sequence>"), else its sequence; Requeue accepts either, and
// the sequence. It is safe for concurrent use.
type PoisonAdmin struct {
	link
	opts    Options // the trigger's
	subject string  // the poison subject

	mu       sync.Mutex
	counted  bool          // Count has run
	stream   natsjs.Stream // the stream capturing the poison subject, when found
	lastSeq  uint64        // the stream's last sequence at the last Count
	count    int           // the poison subject's messages at the last Count
	isClosed bool
}

var (
	_ triggers.PoisonAdmin    = (*PoisonAdmin)(nil)
	_ triggers.OpenPoisonFunc = OpenPoisonURL
)

// OpenPoisonURL opens the poison administration of a trigger URL (see
// OpenURL; o.PoisonName and o.Connection apply as they do there). It fails
// when the trigger has no poison subject (its subject already ends in
// "-poison"). The connection is shared with the drivers, publishers and
// poison administrations of this package on the same server URL.
func OpenPoisonURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	opts, server, setting, err := resolveOpen(ctx, u, o)
	if err != nil {
		return nil, err
	}
	if opts.PoisonSubject == "" {
		return nil, fmt.Errorf("jetstream: %s has no poison subject (its subject already ends in %s)", u.Redacted(), PoisonSuffix)
	}
	p := &PoisonAdmin{opts: opts, subject: opts.PoisonSubject}
	p.name = p.Source() // Requeue publishes there
	if err := p.dial(server, nil); err != nil {
		return nil, fromSetting(err, setting)
	}
	return p, nil
}

// Source names the trigger's subject and stream.
func (p *PoisonAdmin) Source() string {
	return fmt.Sprintf("subject %s (stream %s)", sourceSubject(p.opts), p.opts.Stream)
}

// Poison names the poison subject, and its stream once Count found it.
func (p *PoisonAdmin) Poison() string {
	p.mu.Lock()
	s := p.stream
	p.mu.Unlock()
	if s != nil {
		return fmt.Sprintf("subject %s (stream %s)", p.subject, s.CachedInfo().Config.Name)
	}
	return "subject " + p.subject
}

// Close gives back the connection (closing it when it was the last user).
// It is idempotent; afterwards every other method returns an error
// wrapping triggers.ErrClosed.
func (p *PoisonAdmin) Close() error {
	p.mu.Lock()
	p.isClosed = true
	p.mu.Unlock()
	p.release()
	return nil
}

func (p *PoisonAdmin) closedErr(op string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed {
		return fmt.Errorf("jetstream: %s %s: poison administration %w", op, p.subject, triggers.ErrClosed)
	}
	return nil
}

func (p *PoisonAdmin) opErr(op string, err error) error {
	if !p.nc.IsConnected() {
		return p.scrub(fmt.Errorf("jetstream: %s: not connected to the NATS server (%s): %w", op, p.nc.Status(), err))
	}
	return p.scrub(fmt.Errorf("jetstream: %s: %w", op, err))
}

// Count finds the stream that captures the poison subject and counts the
// subject's messages in it; exists is false when no stream captures it.
// Later List, Requeue and Purge calls act on the messages counted.
func (p *PoisonAdmin) Count(ctx context.Context) (int, bool, error) {
	if err := p.closedErr("count"); err != nil {
		return 0, false, err
	}
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	name, err := p.js.StreamNameBySubject(cctx, p.subject)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		p.set(nil, 0, 0)
		return 0, false, nil
	}
	if err != nil {
		return 0, false, p.opErr("find the stream of poison subject "+p.subject, err)
	}
	s, err := p.js.Stream(cctx, name)
	if err != nil {
		return 0, false, p.opErr("look up stream "+name, err)
	}
	info, err := s.Info(cctx, natsjs.WithSubjectFilter(p.subject))
	if err != nil {
		return 0, false, p.opErr("look up stream "+name, err)
	}
	n := int(info.State.Subjects[p.subject])
	p.set(s, info.State.LastSeq, n)
	return n, true, nil
}

func (p *PoisonAdmin) set(s natsjs.Stream, lastSeq uint64, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counted, p.stream, p.lastSeq, p.count = true, s, lastSeq, n
}

// last returns what the last Count found, counting first if need be.
func (p *PoisonAdmin) last(ctx context.Context, op string) (s natsjs.Stream, lastSeq uint64, n int, err error) {
	if err := p.closedErr(op); err != nil {
		return nil, 0, 0, err
	}
	p.mu.Lock()
	done := p.counted
	p.mu.Unlock()
	if !done {
		if _, _, err := p.Count(ctx); err != nil {
			return nil, 0, 0, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stream, p.lastSeq, p.count, nil
}

// next returns the first poison message at or after seq and at or before
// lastSeq; nil at the end.
func (p *PoisonAdmin) next(ctx context.Context, s natsjs.Stream, seq, lastSeq uint64) (*natsjs.RawStreamMsg, error) {
	if s == nil || seq > lastSeq {
		return nil, nil // poisoned after the count (perhaps requeued by us and poisoned again)
	}
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := s.GetMsg(cctx, seq, natsjs.WithGetMsgSubject(p.subject))
	if errors.Is(err, natsjs.ErrMsgNotFound) || (err == nil && m.Sequence > lastSeq) {
		return nil, nil
	}
	if err != nil {
		return nil, p.opErr("read "+p.Poison(), err)
	}
	return m, nil
}

// poisonMessage makes a stored poison message a triggers.PoisonMessage.
func poisonMessage(m *natsjs.RawStreamMsg) *triggers.PoisonMessage {
	pm := &triggers.PoisonMessage{
		ID:            m.Header.Get(HeaderMsgID),
		Sequence:      m.Sequence,
		InsertionTime: m.Time,
		Body:          m.Data,
		Properties:    firstValues(m.Header),
	}
	if pm.ID == "" {
		pm.ID = strconv.FormatUint(m.Sequence, 10)
	}
	for k, v := range pm.Properties {
		if strings.EqualFold(k, HeaderReason) {
			pm.Reason = v
		}
	}
	return pm
}

// List returns up to n of the counted poison messages, oldest first,
// without changing anything.
func (p *PoisonAdmin) List(ctx context.Context, n int) ([]*triggers.PoisonMessage, error) {
	s, lastSeq, _, err := p.last(ctx, "list")
	if err != nil {
		return nil, err
	}
	var out []*triggers.PoisonMessage
	for seq := uint64(1); len(out) < n; {
		m, err := p.next(ctx, s, seq, lastSeq)
		if err != nil || m == nil {
			return out, err
		}
		out = append(out, poisonMessage(m))
		seq = m.Sequence + 1
	}
	return out, nil
}

// bookkeeping reports headers that jobhost added to a message on its way
// to poison; a requeued message drops them so that its attempts start
// afresh.
func bookkeeping(k string) bool {
	l := strings.ToLower(k)
	return strings.HasPrefix(l, "x-jobhost-") || strings.HasPrefix(l, "jobhost-")
}

// requeueHeaders are m's headers without jobhost's bookkeeping and without
// Nats-* headers: those are the server's, and a Nats-Msg-Id still in the
// source stream's duplicate window would make the stream drop the copy.
func requeueHeaders(m *natsjs.RawStreamMsg) map[string]string {
	props := map[string]string{}
	for k, vs := range m.Header {
		if len(vs) == 0 || bookkeeping(k) || strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		props[k] = vs[0]
	}
	return props
}

// Requeue moves counted poison messages back to the trigger's subject:
// the one whose ID (or sequence) is id, or, when id is "", up to limit of
// them, oldest first. Each is published, and deleted from the poison
// stream only once the trigger's stream acknowledged the copy. A trigger
// with a wildcard subject is refused: a poison message does not record
// which subject it came from.
func (p *PoisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(*triggers.PoisonMessage, error)) (bool, error) {
	if err := p.closedErr("requeue from"); err != nil {
		return false, err
	}
	if subj := sourceSubject(p.opts); strings.ContainsAny(subj, "*>") {
		return false, fmt.Errorf("jetstream: the trigger's subject %s has wildcards: a poison message does not record which subject it came from; publish it yourself", subj)
	}
	s, lastSeq, _, err := p.last(ctx, "requeue from")
	if err != nil {
		return false, err
	}
	found, seen := false, 0
	for seq := uint64(1); (id != "" || seen < limit) && !found; {
		m, err := p.next(ctx, s, seq, lastSeq)
		if err != nil || m == nil {
			return found, err
		}
		seq = m.Sequence + 1
		pm := poisonMessage(m)
		if id != "" && pm.ID != id && strconv.FormatUint(m.Sequence, 10) != id {
			continue
		}
		seen++
		found = id != ""
		pctx, cancel := withTimeout(ctx)
		_, err = p.publish(pctx, p.opts, sourceSubject(p.opts), m.Data, requeueHeaders(m))
		cancel()
		if err != nil {
			done(pm, fmt.Errorf("not copied to %s, it stays in poison: %w", p.Source(), err))
			continue
		}
		dctx, cancel := withTimeout(ctx)
		err = s.DeleteMsg(dctx, m.Sequence)
		cancel()
		if err != nil {
			done(pm, p.scrub(fmt.Errorf("copied to %s but not deleted from %s, so it is now in both: %w", p.Source(), p.Poison(), err)))
			continue
		}
		done(pm, nil)
	}
	return found, nil
}

// Purge deletes up to limit of the counted poison messages, oldest first,
// and returns how many the server removed. Messages poisoned since the
// count are kept.
func (p *PoisonAdmin) Purge(ctx context.Context, limit int) (int, error) {
	s, lastSeq, n, err := p.last(ctx, "purge")
	if err != nil || s == nil || limit <= 0 {
		return 0, err
	}
	upTo := lastSeq + 1 // purge below this sequence
	if limit < n {
		seq := uint64(1)
		for range limit {
			m, err := p.next(ctx, s, seq, lastSeq)
			if err != nil {
				return 0, err
			}
			if m == nil {
				break
			}
			seq = m.Sequence + 1
		}
		upTo = seq
	}
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	purged, err := p.purge(cctx, s.CachedInfo().Config.Name, upTo)
	if err != nil {
		return 0, p.opErr("purge "+p.Poison(), err)
	}
	return purged, nil
}

// purge purges the poison subject below sequence upTo from stream and
// returns how many messages the server removed (natsjs's Purge does not
// say).
func (p *PoisonAdmin) purge(ctx context.Context, stream string, upTo uint64) (int, error) {
	req, err := json.Marshal(struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq"`
	}{p.subject, upTo})
	if err != nil {
		return 0, err
	}
	msg, err := p.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+stream, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Success bool   `json:"success"`
		Purged  uint64 `json:"purged"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("unreadable purge response: %w", err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("%s (%d, error code %d)", resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
	}
	if !resp.Success {
		return 0, errors.New("the server did not purge")
	}
	return int(resp.Purged), nil
}
