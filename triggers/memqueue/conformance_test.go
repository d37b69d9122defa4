package memqueue_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/memqueue/memqueuetest"
)

func TestConformance(t *testing.T) {
	drivertest.RunConformanceTests(t, func(*testing.T) drivertest.Harness { return memqueuetest.Harness() })
}
