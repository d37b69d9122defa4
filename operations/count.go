package operations

import "context"

// Counter is an optional Store capability: counting records by status
// without reading them, for dashboards. Stores that cannot count cheaply
// do not implement it, and callers then show no counts rather than scan.
type Counter interface {
	// CountByStatus returns how many unexpired records each status has,
	// of one function (name) or of all (name ""). Statuses with no record
	// may be missing from the map.
	CountByStatus(ctx context.Context, name string) (map[Status]int, error)
}

// CounterOf returns the Counter behind v: v itself, or the store of a
// value that exposes one with a Store() method (a client). ok is false
// when there is none.
func CounterOf(v any) (c Counter, ok bool) {
	if c, ok = v.(Counter); ok {
		return c, true
	}
	if s, has := v.(interface{ Store() Store }); has {
		if st := s.Store(); st != nil {
			c, ok = st.(Counter)
		}
	}
	return c, ok
}
