package triggers

import "context"

// DepthCounter is implemented by drivers that can count the messages
// waiting in their source without receiving them. The host samples it in
// the background for its queue depth metric and dashboard, never on the
// hot path.
type DepthCounter interface {
	// Depth returns how many messages the source holds, including those
	// leased to receivers where the broker counts them together; for some
	// brokers (Storage Queues) the count is approximate.
	Depth(ctx context.Context) (int64, error)
}
