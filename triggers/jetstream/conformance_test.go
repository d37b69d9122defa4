package jetstream_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

func TestConformance(t *testing.T) {
	drivertest.RunConformanceTests(t, jstest.NewHarness)
}
