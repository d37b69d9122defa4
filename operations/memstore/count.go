package memstore

import (
	"context"

	"github.com/jobhost/jobhost/operations"
)

var _ operations.Counter = (*Store)(nil)

// CountByStatus returns how many unexpired records each status has, of
// function name ("" for all). It walks the records under the lock without
// copying them.
func (s *Store) CountByStatus(ctx context.Context, name string) (map[operations.Status]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	now := s.clock()
	out := map[operations.Status]int{}
	for _, r := range s.records {
		if (name == "" || r.Name == name) && !expired(r, now) {
			out[r.Status]++
		}
	}
	return out, nil
}
