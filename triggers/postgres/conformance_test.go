package postgres_test

import (
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness { return pgtest.Harness(t) })
}
