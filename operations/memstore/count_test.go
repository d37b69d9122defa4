package memstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
)

// The counts themselves are storetest's (CountByStatus); here what only
// memstore has: CounterOf finds it, and a closed store refuses to count.
func TestCountByStatusClosed(t *testing.T) {
	s := memstore.New(memstore.Options{})
	if c, ok := operations.CounterOf(s); !ok || c != operations.Counter(s) {
		t.Errorf("CounterOf(store) = %v, %v; want the store", c, ok)
	}
	s.Close()
	if _, err := s.CountByStatus(context.Background(), ""); !errors.Is(err, memstore.ErrClosed) {
		t.Errorf("CountByStatus after Close: %v, want ErrClosed", err)
	}
}
