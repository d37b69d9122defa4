package tablestore_test

import (
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/storetest"
	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, ttl time.Duration) operations.Store {
			srv := azuritetest.SharedTable(t)
			s, err := tablestore.FromConnectionString(srv.ConnectionString, tablestore.Options{
				Table: srv.NewTableName(t), TimeToLive: ttl, Now: time.Now,
			})
			if err != nil {
				t.Fatalf("FromConnectionString: %v", err)
			}
			return s
		},
		Now: time.Now,
	})
}
