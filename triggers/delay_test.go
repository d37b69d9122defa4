package triggers_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

func TestCheckDelay(t *testing.T) {
	if err := triggers.CheckDelay("q", time.Hour, time.Hour); err != nil {
		t.Errorf("CheckDelay(limit, limit) = %v, want nil", err)
	}
	err := triggers.CheckDelay(`broker: queue "q"`, time.Hour+time.Second, time.Hour)
	if !errors.Is(err, triggers.ErrDelayTooLong) || !strings.HasPrefix(err.Error(), `broker: queue "q": `) || !strings.Contains(err.Error(), "1h0m0s") {
		t.Errorf("CheckDelay over the limit = %v, want an error wrapping ErrDelayTooLong that names the queue and the limit", err)
	}
}
