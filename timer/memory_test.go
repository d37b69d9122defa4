package timer_test

import (
	"testing"
	"time"

	"github.com/jobhost/jobhost/timer"
	"github.com/jobhost/jobhost/timer/timertest"
)

func memoryBackend() timertest.Backend {
	locker := timer.NewMemoryLocker(nil)
	store := &timer.MemoryStatusStore{}
	return timertest.Backend{
		NewLocker:      func(*testing.T) timer.Locker { return locker },
		NewStatusStore: func(*testing.T) timer.StatusStore { return store },
		Lease:          2 * time.Second,
	}
}

func TestMemoryLockerConformance(t *testing.T)      { timertest.TestLocker(t, memoryBackend()) }
func TestMemoryStatusStoreConformance(t *testing.T) { timertest.TestStatusStore(t, memoryBackend()) }

func TestMemoryRunners(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time: about 25 s")
	}
	timertest.TestRunners(t, memoryBackend())
}
