package gcppubsub_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/pubsub/gcppubsub/gcppubsubtest"
)

// TestConformance runs the driver suite against pstest, Google's Pub/Sub
// fake, in the test process: on plain subscriptions (the count is the
// jobhost-attempt copy's) and on subscriptions with a dead-letter policy
// (Pub/Sub's DeliveryAttempt is set too).
func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("Plain", func(t *testing.T) {
		t.Parallel()
		drivertest.RunConformanceTests(t, gcppubsubtest.NewHarness(gcppubsubtest.Options{}))
	})
	t.Run("DeadLetterPolicy", func(t *testing.T) {
		t.Parallel()
		drivertest.RunConformanceTests(t, gcppubsubtest.NewHarness(gcppubsubtest.Options{DeadLetterPolicy: true}))
	})
}
