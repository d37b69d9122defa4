package memstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
)

// An operation's life in a store: the host records it through the
// Changes, a caller reads it with Get.
func Example() {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	st := memstore.New(memstore.Options{TimeToLive: 24 * time.Hour, Now: func() time.Time { return now }})
	defer st.Close()
	ctx := context.Background()

	rec, err := st.Create(ctx, &operations.Record{
		ID:    operations.NewID(),
		Name:  "resize",
		Input: json.RawMessage(`{"width":640}`),
		RunAs: "alice",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("created:", rec.Status, "expires", rec.ExpiresOn.Format(time.RFC3339))
	id := rec.ID

	rec, _ = st.Update(ctx, id, operations.Started(1, now))
	fmt.Println("started:", rec.Status, rec.State(), "attempt", rec.Attempt)
	st.Update(ctx, id, operations.SetProgress(json.RawMessage(`{"pct":50}`)))
	st.Update(ctx, id, operations.Succeed(json.RawMessage(`{"url":"https://example.com/a.png"}`), now))

	// Changes never move a record backwards: a redelivered message's
	// Started writes nothing, and a succeeded operation cannot be
	// cancelled.
	st.Update(ctx, id, operations.Started(1, now))
	if _, err := st.Update(ctx, id, operations.Cancel(now)); errors.Is(err, operations.ErrCompleted) {
		fmt.Println("cancel:", err)
	}

	rec, err = st.Get(ctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println("got:", rec.Status, rec.State(), string(rec.Output), string(rec.Progress))
	// Output:
	// created: WaitingForResources expires 2030-01-03T03:04:05Z
	// started: InProgress Locked attempt 1
	// cancel: operation already completed: Succeeded
	// got: Succeeded Completed {"url":"https://example.com/a.png"} {"pct":50}
}
