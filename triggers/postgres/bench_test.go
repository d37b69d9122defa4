package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/triggers/postgres"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

// BenchmarkClaimComplete is the measurement behind the engine decision
// (doc.go): 10,000 messages claimed and completed through the Driver at
// 16 in flight, as the host runs them (one poller keeping up to 16
// claimed, each completed by its own goroutine). The rows are inserted
// before the clock starts. Run it with
//
//	go test -run '^$' -bench ClaimComplete -benchtime 3x ./triggers/postgres
func BenchmarkClaimComplete(b *testing.B) {
	const rows, inflight = 10_000, 16
	const body = `{"id":12345,"customer":"Contoso Ltd","items":[{"sku":"A-100","qty":2,"price":12.5},{"sku":"B-200","qty":1,"price":99.99}],"note":"deliver to the back door, ring twice","tenant":"eu-west"}`
	schema := pgtest.NewSchema(b)
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		queue := pgtest.QueueName()
		_, err := pgtest.Admin(b).Exec(ctx, "INSERT INTO "+pgx.Identifier{schema, postgres.MessagesTable}.Sanitize()+
			` (queue, body, props) SELECT $1, convert_to($2, 'UTF8'), '{"k":"v"}' FROM generate_series(1, $3)`, queue, body, rows)
		if err != nil {
			b.Fatal(err)
		}
		d := open(b, schema, queue, postgres.Options{ReceiveWait: -1})
		sem := make(chan struct{}, inflight)
		var wg sync.WaitGroup
		start := time.Now()
		for got := 0; got < rows; {
			sem <- struct{}{} // at least one free slot
			room := 1
		fill:
			for room < inflight {
				select {
				case sem <- struct{}{}:
					room++
				default:
					break fill
				}
			}
			ms, err := d.Receive(ctx, room, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			for range room - len(ms) {
				<-sem
			}
			got += len(ms)
			for _, m := range ms {
				wg.Go(func() {
					if err := d.Complete(ctx, m); err != nil {
						b.Error(err)
					}
					<-sem
				})
			}
		}
		wg.Wait()
		total += time.Since(start)
		d.Close()
	}
	b.ReportMetric(float64(rows*b.N)/total.Seconds(), "msg/s")
}
