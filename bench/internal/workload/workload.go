// Package workload is the one job every system in the benchmark runs: decode
// a ~200-byte JSON object into a struct, record that it arrived, return.
package workload

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Order is the message every system decodes.
type Order struct {
	ID       int64   `json:"id"`
	SentAt   int64   `json:"sentAt"` // unix nanoseconds when enqueued (0 for pre-filled messages)
	Customer string  `json:"customer"`
	Region   string  `json:"region"`
	SKU      string  `json:"sku"`
	Quantity int     `json:"quantity"`
	Total    float64 `json:"total"`
	Currency string  `json:"currency"`
	Note     string  `json:"note"`
}

var regions = []string{"westeurope", "northeurope", "eastus2", "westus3"}

// Body returns the JSON of message id (about 200 bytes), stamped with sentAt.
func Body(id int64, sentAt time.Time) []byte {
	var ts int64
	if !sentAt.IsZero() {
		ts = sentAt.UnixNano()
	}
	o := Order{
		ID:       id,
		SentAt:   ts,
		Customer: fmt.Sprintf("Contoso Pharmaceuticals %06d", id%1000000),
		Region:   regions[id%int64(len(regions))],
		SKU:      fmt.Sprintf("SKU-%08d", (id*7919)%100000000),
		Quantity: int(id%17) + 1,
		Total:    float64(id%100000)/100 + 12.5,
		Currency: "EUR",
		Note:     "deliver to loading bay 4, ring twice",
	}
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	return b
}

// Base64 encodes a body as a Storage Queue message under messageEncoding base64.
func Base64(body []byte) string { return base64.StdEncoding.EncodeToString(body) }

// Decode is the function's work for systems that hand over raw bytes.
func Decode(b []byte) (Order, error) {
	var o Order
	err := json.Unmarshal(b, &o)
	return o, err
}

// Recorder counts processed messages, notes which ids were seen (so lost and
// duplicated messages can be counted) and, when asked, keeps enqueue→
// invocation latencies. It is safe for concurrent use and cheap: one atomic
// add, one atomic or, one clock read per message.
type Recorder struct {
	n      atomic.Int64
	dups   atomic.Int64
	first  atomic.Int64
	last   atomic.Int64
	target int64
	bits   []atomic.Uint64
	maxID  int64

	latency bool
	lat     []atomic.Int64 // by id: latency + 1 (0: none)

	Done     chan struct{} // closed when target messages were recorded (target > 0)
	doneOnce sync.Once
}

// NewRecorder tracks ids 0..maxID-1; target > 0 closes Done after that many.
func NewRecorder(maxID, target int64, latency bool) *Recorder {
	r := &Recorder{
		target: target, maxID: maxID, bits: make([]atomic.Uint64, (maxID+63)/64),
		latency: latency, Done: make(chan struct{}),
	}
	if latency {
		r.lat = make([]atomic.Int64, maxID)
	}
	return r
}

// Record notes one processed message.
func (r *Recorder) Record(o *Order) {
	now := time.Now().UnixNano()
	if o.ID >= 0 && o.ID < r.maxID {
		mask := uint64(1) << (uint64(o.ID) % 64)
		if r.bits[o.ID/64].Or(mask)&mask != 0 {
			r.dups.Add(1)
		}
	}
	if r.latency && o.SentAt > 0 && o.ID >= 0 && o.ID < r.maxID {
		r.lat[o.ID].CompareAndSwap(0, now-o.SentAt+1)
	}
	r.first.CompareAndSwap(0, now)
	r.last.Store(now)
	if n := r.n.Add(1); n == r.target {
		r.doneOnce.Do(func() { close(r.Done) })
	}
}

// Count is how many messages were recorded.
func (r *Recorder) Count() int64 { return r.n.Load() }

// Dups is how many recorded messages had an id seen before.
func (r *Recorder) Dups() int64 { return r.dups.Load() }

// First and Last are the unix nanosecond times of the first and last record.
func (r *Recorder) First() int64 { return r.first.Load() }
func (r *Recorder) Last() int64  { return r.last.Load() }

// Bitmap returns the seen ids as little-endian 64-bit words.
func (r *Recorder) Bitmap() []uint64 {
	out := make([]uint64, len(r.bits))
	for i := range r.bits {
		out[i] = r.bits[i].Load()
	}
	return out
}

// Latencies returns the first delivery's latency (ns) of each id, -1 for
// ids not seen.
func (r *Recorder) Latencies() []int64 {
	out := make([]int64, len(r.lat))
	for i := range r.lat {
		out[i] = r.lat[i].Load() - 1
	}
	return out
}

// RiverOrder is River's job args for the order: River stores it as the
// job's JSON args (the same JSON as Body) and unmarshals it into this
// struct before the worker runs (the decode every system does).
type RiverOrder struct {
	Order
}

// Kind is River's job kind.
func (RiverOrder) Kind() string { return "bench_order" }

// AsynqTaskType is the task type of the order in the asynq rows.
const AsynqTaskType = "bench:order"
