package harness

import (
	"fmt"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

// scenarioScaleOutNATS is f3: 1, 2, 4 and 8 jobhost processes sharing one
// durable pull consumer of a pre-filled work-queue stream (a fresh stream
// per run), in paired rounds as f1 and f2 (scaleout.go). Each process holds
// at most batchSize + newBatchThreshold (16) messages; the consumer's
// MaxAckPending (driver default 10,000) is consumer-wide.
func (b *bench) scenarioScaleOutNATS() *Scenario {
	n := b.n.scaleNATS
	s := &Scenario{ID: "f3", Title: fmt.Sprintf("Scale-out on NATS JetStream: %d messages, one stream and durable consumer, N jobhost processes (16 in flight each)", n)}
	nj, err := dialNATS(b.natsURL)
	if err != nil {
		s.Error = "NATS: " + err.Error()
		return s
	}
	defer nj.close()
	b.scaleOutRounds(s, b.n.natsHosts, func(k int) *Row {
		id := randSuffix()
		stream, subject := "BENCH_F3_"+id, "bench.f3."+id
		defer nj.deleteStream(bg, stream)
		if err := nj.createStream(bg, stream, subject); err != nil {
			return errRow("", proto.JobhostNATS, err)
		}
		if err := nj.prefill(bg, subject, n); err != nil {
			return errRow("", proto.JobhostNATS, fmt.Errorf("prefill: %w", err))
		}
		spec := b.jobhostSpec(proto.JobhostNATS, "nats")
		spec.NATSURL, spec.Stream, spec.Subject = b.natsURL, stream, subject
		r := b.scaleOut("", spec, k, n, pidMeter("nats-server", "nats-server"), "f3")
		if left, err := nj.streamMsgs(bg, stream); err == nil && r.Extra != nil {
			r.Extra["leftInStream"] = left
		}
		return r
	})
	s.Notes = append([]string{"All processes read one durable consumer (nats://<subject>?stream=S); each keeps at most its prefetch (16) unacknowledged, the consumer's MaxAckPending (10,000) bounds them together."}, s.Notes...)
	return s
}
