package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

func TestZZDebug(t *testing.T) {
	for i := 0; i < 20; i++ {
		t.Run("x", func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := jstest.NewFixture(ctx, t)
			d := f.Open(ctx, t, f.Options())
			f.Send(ctx, []byte("hi"), nil)
			var ms []*struct{}
			_ = ms
			m1, err := d.Receive(ctx, 1, 2*time.Second)
			if err != nil || len(m1) != 1 {
				t.Fatalf("%v %d", err, len(m1))
			}
			t0 := time.Now()
			for {
				got, err := d.Receive(ctx, 32, 60*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) > 0 {
					t.Logf("after %v: %s count %d (first %s count %d)", time.Since(t0), got[0].ID, got[0].DequeueCount, m1[0].ID, m1[0].DequeueCount)
					if got[0].DequeueCount != 2 {
						t.Errorf("BAD")
					}
					d.Complete(ctx, got[0])
					return
				}
			}
		})
	}
}
