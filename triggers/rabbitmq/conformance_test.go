package rabbitmq_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

func TestConformanceQuorum(t *testing.T) {
	t.Parallel()
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness { return rabbittest.Harness(t, true) })
}

func TestConformanceClassic(t *testing.T) {
	t.Parallel()
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness { return rabbittest.Harness(t, false) })
}
