package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
)

// natsTimeout bounds one JetStream API call.
const natsTimeout = 10 * time.Second

// natsPoison is a JetStream trigger and its poison subject. The poison
// messages are read and deleted in the stream that captures the subject
// (the driver creates "<STREAM>_POISON" with limits retention, where an
// acknowledgement does not remove a message): listing reads them by
// sequence and changes nothing; requeue publishes each to the trigger's
// subject through the driver, then deletes it by sequence; purge purges the
// subject up to the last sequence counted.
type natsPoison struct {
	drv     *jetstream.Driver // the trigger: publishes to its subject
	js      natsjs.JetStream
	subject string // the poison subject
	stream  natsjs.Stream
	lastSeq uint64 // the poison subject's last sequence when counted
}

func openNATSPoison(ctx context.Context, u *url.URL, conn, poisonName string, lookup func(string) (string, bool)) (*natsPoison, error) {
	d, err := jetstream.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Connection: conn, PoisonName: poisonName})
	if err != nil {
		return nil, err
	}
	jd := d.(*jetstream.Driver)
	if jd.PoisonDestination() == "" {
		jd.Close()
		return nil, fmt.Errorf("%s has no poison subject (its subject already ends in %s)", redactURL(u), jetstream.PoisonSuffix)
	}
	js, err := natsjs.New(jd.Conn())
	if err != nil {
		jd.Close()
		return nil, err
	}
	return &natsPoison{drv: jd, js: js, subject: jd.PoisonDestination()}, nil
}

func (n *natsPoison) Source() string {
	subj := n.drv.Subject()
	if subj == "" {
		subj = n.drv.Stream()
	}
	return fmt.Sprintf("subject %s (stream %s)", subj, n.drv.Stream())
}

func (n *natsPoison) Poison() string {
	if n.stream != nil {
		return fmt.Sprintf("subject %s (stream %s)", n.subject, n.stream.CachedInfo().Config.Name)
	}
	return "subject " + n.subject
}

func (n *natsPoison) Close() { n.drv.Close() }

func natsCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, natsTimeout)
}

func (n *natsPoison) apiErr(op string, err error) error {
	if !n.drv.Conn().IsConnected() {
		return fmt.Errorf("%s: not connected to the NATS server (%s): %w", op, n.drv.Conn().Status(), err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Count finds the stream that captures the poison subject and counts the
// subject's messages in it.
func (n *natsPoison) Count(ctx context.Context) (int, bool, error) {
	cctx, cancel := natsCtx(ctx)
	defer cancel()
	name, err := n.js.StreamNameBySubject(cctx, n.subject)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, n.apiErr("find the stream of poison subject "+n.subject, err)
	}
	if n.stream, err = n.js.Stream(cctx, name); err != nil {
		return 0, false, n.apiErr("look up stream "+name, err)
	}
	info, err := n.stream.Info(cctx, natsjs.WithSubjectFilter(n.subject))
	if err != nil {
		return 0, false, n.apiErr("look up stream "+name, err)
	}
	n.lastSeq = info.State.LastSeq
	return int(info.State.Subjects[n.subject]), true, nil
}

// next returns the first poison message at or after seq; nil at the end.
func (n *natsPoison) next(ctx context.Context, seq uint64) (*natsjs.RawStreamMsg, error) {
	if seq > n.lastSeq {
		return nil, nil // poisoned after we counted (perhaps requeued by us and poisoned again)
	}
	cctx, cancel := natsCtx(ctx)
	defer cancel()
	m, err := n.stream.GetMsg(cctx, seq, natsjs.WithGetMsgSubject(n.subject))
	if errors.Is(err, natsjs.ErrMsgNotFound) || (err == nil && m.Sequence > n.lastSeq) {
		return nil, nil
	}
	if err != nil {
		return nil, n.apiErr("read "+n.Poison(), err)
	}
	return m, nil
}

func natsMessage(m *natsjs.RawStreamMsg) *poisonMessage {
	pm := &poisonMessage{ID: m.Header.Get(jetstream.HeaderMsgID), Sequence: m.Sequence, InsertionTime: m.Time, Body: m.Data}
	if pm.ID == "" {
		pm.ID = strconv.FormatUint(m.Sequence, 10)
	}
	if len(m.Header) > 0 {
		pm.Properties = map[string]string{}
		for k, vs := range m.Header {
			if len(vs) > 0 {
				pm.Properties[k] = vs[0]
			}
		}
	}
	return pm
}

func (n *natsPoison) List(ctx context.Context, limit int) ([]*poisonMessage, error) {
	var out []*poisonMessage
	for seq := uint64(1); len(out) < limit; {
		m, err := n.next(ctx, seq)
		if err != nil || m == nil {
			return out, err
		}
		out = append(out, natsMessage(m))
		seq = m.Sequence + 1
	}
	return out, nil
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

func (n *natsPoison) Requeue(ctx context.Context, id string, limit int, done func(*poisonMessage, error)) (bool, error) {
	if subj := n.drv.Subject(); strings.ContainsAny(subj, "*>") {
		return false, fmt.Errorf("the trigger's subject %s has wildcards: a poison message does not record which subject it came from; publish it yourself", subj)
	}
	found, seen := false, 0
	for seq := uint64(1); seen < limit && !found; {
		m, err := n.next(ctx, seq)
		if err != nil || m == nil {
			return found, err
		}
		seq = m.Sequence + 1
		pm := natsMessage(m)
		if id != "" && pm.ID != id && strconv.FormatUint(m.Sequence, 10) != id {
			continue
		}
		seen++
		found = id != ""
		pctx, cancel := natsCtx(ctx)
		_, err = n.drv.Publish(pctx, m.Data, requeueHeaders(m))
		cancel()
		if err != nil {
			done(pm, fmt.Errorf("not copied to %s, it stays in poison: %w", n.Source(), err))
			continue
		}
		dctx, cancel := natsCtx(ctx)
		err = n.stream.DeleteMsg(dctx, m.Sequence)
		cancel()
		if err != nil {
			done(pm, fmt.Errorf("copied to %s but not deleted from %s, so it is now in both: %w", n.Source(), n.Poison(), err))
			continue
		}
		done(pm, nil)
	}
	return found, nil
}

// Purge purges the poison subject up to the last sequence counted, so that
// messages poisoned since are kept.
func (n *natsPoison) Purge(ctx context.Context, limit int) (int, error) {
	cctx, cancel := natsCtx(ctx)
	defer cancel()
	if err := n.stream.Purge(cctx, natsjs.WithPurgeSubject(n.subject), natsjs.WithPurgeSequence(n.lastSeq+1)); err != nil {
		return 0, n.apiErr("purge "+n.Poison(), err)
	}
	return limit, nil
}
