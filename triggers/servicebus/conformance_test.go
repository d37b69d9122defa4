package servicebus_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

// TestConformance runs the suite on a fake queue; delayed retries are held.
func TestConformance(t *testing.T) {
	t.Parallel()
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness { return sbfake.Harness{} })
}

// TestConformanceScheduledRetry runs the suite with every delayed retry
// done by a scheduled copy.
func TestConformanceScheduledRetry(t *testing.T) {
	t.Parallel()
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness {
		return sbfake.Harness{Options: servicebus.Options{MaxHeldRetryDelay: -1}}
	})
}

// TestConformanceSubscription runs the suite on a fake topic subscription.
func TestConformanceSubscription(t *testing.T) {
	t.Parallel()
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness { return sbfake.Harness{Subscription: true} })
}
