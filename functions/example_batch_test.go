package functions_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// Row is one row of a bulk insert.
type Row struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// A batch function gets up to MaxBatchSize messages at once: one bulk
// insert, one API call for a hundred items. Returning nil completes them
// all, an error retries them all, and BatchErrors gives each its own
// outcome with the errors a single function returns.
func ExampleAddBatch() {
	reg := &functions.Registry{}
	functions.AddBatch(reg, "ImportRows", functions.QueueTrigger("rows"),
		func(ctx context.Context, rows []Row, msgs []*triggers.Message) error {
			errs := make([]error, len(rows))
			for i, r := range rows {
				if r.Title == "" {
					errs[i] = functions.Permanent(errors.New("a row needs a title")) // to poison, alone
				}
			}
			return functions.BatchErrors(errs)
		},
		functions.MaxBatchSize(100),
		functions.MinBatchSize(20, 5*time.Second)) // wait up to 5 s for 20
	d := reg.Functions()[0]
	err := d.InvokeBatch(context.Background(),
		[][]byte{[]byte(`{"id": 1, "title": "one"}`), []byte(`{"id": 2}`)},
		[]*triggers.Message{{ID: "m1"}, {ID: "m2"}})
	fmt.Println(d.Name, d.ArgType, d.IsBatch())
	fmt.Println(err)
	// Output:
	// ImportRows []functions_test.Row true
	// batch: message 1: a row needs a title
}
