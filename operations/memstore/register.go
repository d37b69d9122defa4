package memstore

import (
	"context"

	"github.com/jobhost/jobhost/operations"
)

// The "memory" store kind (jobhost.operations.store): records live in the
// host process and are lost when it exits; for tests and single-process
// use, where the host serves the API itself.
func init() {
	operations.RegisterStore("memory", func(_ context.Context, o operations.OpenOptions) (operations.Store, error) {
		return New(Options{TimeToLive: o.TimeToLive}), nil
	})
}
