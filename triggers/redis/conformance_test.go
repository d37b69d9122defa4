package redis_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/redis/redistest"
)

func TestConformance(t *testing.T) {
	drivertest.RunConformanceTests(t, redistest.Harness)
}
