package kafka_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/pubsub/kafka/kafkatest"
)

// TestConformance runs the driver suite against kfake, a Kafka protocol
// peer in the test process.
func TestConformance(t *testing.T) {
	drivertest.RunConformanceTests(t, kafkatest.NewHarness)
}
