package runtime

import (
	"maps"

	"github.com/jobhost/jobhost/triggers"
)

// viewSlab makes the copies of messages that functions get (body and
// properties copied, no DriverData) out of slabs a worker allocates a few at a
// time, instead of two allocations per message: a function that keeps its
// message keeps its slab alive, which costs a few kilobytes at most.
// Copies never share bytes: each body is a full slice of its own range.
type viewSlab struct {
	msgs  []triggers.Message
	bytes []byte
}

const (
	slabMessages = 16
	slabBytes    = 8 << 10
	// slabMaxBody is the largest body copied into a slab; larger ones get
	// an allocation of their own.
	slabMaxBody = 1 << 10
)

// clone returns a copy of m for its function: body and properties copied,
// no DriverData. A private body (triggers.PrivateBodies) is not copied: the
// function gets the delivery's own bytes.
func (s *viewSlab) clone(m *triggers.Message, private bool) *triggers.Message {
	if len(s.msgs) == 0 {
		s.msgs = make([]triggers.Message, slabMessages)
	}
	v := &s.msgs[0]
	s.msgs = s.msgs[1:]
	*v = *m
	v.DriverData = nil
	v.Properties = maps.Clone(m.Properties)
	switch n := len(m.Body); {
	case m.Body == nil, private:
	case n > slabMaxBody:
		v.Body = append([]byte(nil), m.Body...)
	default:
		if cap(s.bytes)-len(s.bytes) < n {
			s.bytes = make([]byte, 0, slabBytes)
		}
		start := len(s.bytes)
		s.bytes = append(s.bytes, m.Body...)
		v.Body = s.bytes[start:len(s.bytes):len(s.bytes)]
	}
	return v
}
