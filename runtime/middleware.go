package runtime

import (
	"context"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

// Invocation is one call of a function, as middleware sees it. It is valid
// only during the call: middleware that hands it to another goroutine
// copies what it needs.
type Invocation struct {
	// ID is the invocation id logged on the completion line.
	ID string
	// Function is the function's resolved configuration.
	Function *FunctionConfig
	// Message is the invocation's own copy of the message (the one the
	// function gets); middleware must not change it.
	Message *triggers.Message
	// Payload is the decoded message body the function's argument is bound
	// from; middleware must not change it.
	Payload []byte
	// Messages and Payloads are a batch function's messages and decoded
	// bodies (Message and Payload are then nil).
	Messages []*triggers.Message
	Payloads [][]byte
	// Start is when the host took the message up.
	Start time.Time
}

// Handler runs one invocation: the function with its argument bound. The
// error is the attempt's outcome, as the function's own error would be.
type Handler func(ctx context.Context, inv *Invocation) error

// Middleware wraps the invocation of every function of a host, in the
// manner of net/http middleware: tracing, metrics, tests. It runs inside
// the host's timeout, panic recovery and lease renewal, and outside the
// function; what it returns is what the host settles the message by.
type Middleware func(next Handler) Handler

// chain applies mws to h, the first outermost.
func chain(h Handler, mws []Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}
