package memqueue_test

import (
	"context"
	"fmt"
	"io"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

type upload struct {
	Name string `json:"name"`
}

type thumbnail struct {
	Of    string `json:"of"`
	Width int    `json:"width"`
}

// A pipeline inside one worker: Resize's return value goes to
// memqueue://thumbnails, which triggers Publish in the same host.
func Example_pipeline() {
	reg := &functions.Registry{}
	functions.AddResult(reg, "Resize", functions.SubscriptionTrigger("memqueue://uploads"), "memqueue://thumbnails",
		func(ctx context.Context, u upload, m *triggers.Message) (thumbnail, error) {
			return thumbnail{Of: u.Name, Width: 128}, nil
		})
	published := make(chan thumbnail)
	functions.Add(reg, "Publish", functions.SubscriptionTrigger("memqueue://thumbnails"),
		func(ctx context.Context, t thumbnail, m *triggers.Message) error {
			published <- t
			return nil
		})

	logs, _ := runtime.NewLogs(runtime.LogOptions{Output: zapDiscard{}})
	host, err := runtime.New(runtime.Options{Registry: reg, Config: runtime.DefaultConfig(), Logs: logs})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- host.Run(ctx) }()

	memqueue.Default.Queue("uploads").Send([]byte(`{"name": "cat.png"}`), nil)
	fmt.Printf("%+v\n", <-published)
	stop()
	<-done
	// Output: {Of:cat.png Width:128}
}

type zapDiscard struct{}

func (zapDiscard) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (zapDiscard) Sync() error                 { return nil }
