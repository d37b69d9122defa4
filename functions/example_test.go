package functions_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// SendMail is the argument, bound from the message's JSON.
type SendMail struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// A function is a plain Go func; registering it from init() in your package
// is all the host needs to discover it.
func ExampleRegister() {
	functions.Register("SendMail", functions.QueueTrigger("%MailQueue%"),
		func(ctx context.Context, mail SendMail, msg *triggers.Message) error {
			functions.Logger(ctx).Info("sending " + mail.Subject + " (attempt " + fmt.Sprint(msg.DequeueCount) + ")")
			return nil // nil deletes the message; an error retries it
		},
		functions.MaxDequeueCount(10),
		functions.Timeout(2*time.Minute))
}

// Tests can use a registry of their own instead of functions.Default.
func ExampleAdd() {
	reg := &functions.Registry{}
	functions.Add(reg, "Echo", functions.QueueTrigger("echo").WithConnection("Orders"),
		func(ctx context.Context, text string, msg *triggers.Message) error { return nil })
	functions.Add(reg, "Echo", functions.QueueTrigger("echo2"),
		func(ctx context.Context, text string, msg *triggers.Message) error { return nil })
	for _, d := range reg.Functions() {
		fmt.Println(d.Name, d.Trigger.Queue, d.Trigger.Connection, d.ArgType)
	}
	for _, p := range reg.Problems() {
		fmt.Println(p)
	}
	// Output:
	// Echo echo Orders string
	// function Echo: registered more than once (function names are case-insensitive)
}
