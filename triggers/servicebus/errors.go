package servicebus

import (
	"errors"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/triggers"
)

var (
	// ErrLockRenewalLimit is wrapped by the error ExtendLease returns once
	// the message has been held for longer than
	// Options.MaxAutoLockRenewalDuration: the lock is no longer renewed and
	// the message is redelivered when it runs out. The runtime may match it
	// with errors.Is to log it once per message.
	ErrLockRenewalLimit = errors.New("lock renewal limit (maxAutoLockRenewalDuration) reached; the lock is no longer renewed")

	// ErrClosed is triggers.ErrClosed: it is wrapped by the errors of a
	// Driver, Publisher or PoisonAdmin used after Close.
	ErrClosed = triggers.ErrClosed

	// ErrRequeueSubscription is wrapped by PoisonAdmin.Requeue on a topic
	// subscription: a copy sent to the topic would reach every subscription.
	ErrRequeueSubscription = errors.New("cannot requeue into a topic subscription (a copy sent to the topic would reach every subscription)")

	// ErrNoDeadLetterQueue is wrapped by DeadLetter on a driver that reads a
	// dead-letter queue: a dead-letter queue has no dead-letter queue.
	ErrNoDeadLetterQueue = errors.New("a dead-letter queue has no dead-letter queue")
)

// opError is the error every Driver operation returns for a failed broker
// call. Its text names the operation, the triggers sentinels it stands for
// and the cause, redacted; it unwraps to those sentinels and to the original
// error, so errors.As(err, **azservicebus.Error) still works.
type opError struct {
	op    string
	kinds []error
	err   error
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("servicebus: ")
	b.WriteString(e.op)
	for _, k := range e.kinds {
		b.WriteString(": ")
		b.WriteString(k.Error())
	}
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(Redact(e.err.Error()))
	}
	return b.String()
}

func (e *opError) Unwrap() []error {
	out := append([]error(nil), e.kinds...)
	if e.err != nil {
		out = append(out, e.err)
	}
	return out
}

// wrapErr classifies a broker error. forMessage is true for operations on
// one message (a missing entity then also means the lease is lost).
func wrapErr(op string, err error, forMessage bool) error {
	if err == nil {
		return nil
	}
	e := &opError{op: op, err: err}
	switch {
	case isLockLost(err):
		e.kinds = []error{triggers.ErrLeaseLost}
	case isNotFound(err):
		e.kinds = []error{triggers.ErrNotFound}
		if forMessage {
			e.kinds = append(e.kinds, triggers.ErrLeaseLost)
		}
	}
	return e
}

// isLockLost reports whether err says the message lock is no longer held
// (expired, message settled, or taken by another receiver).
func isLockLost(err error) bool {
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeLockLost {
		return true
	}
	return amqpCondition(err) == "com.microsoft:message-lock-lost"
}

// isNotFound reports whether err says the queue, topic or subscription does
// not exist. azservicebus maps management 404s to CodeNotFound; a receiver
// link attached to a missing entity fails with amqp:not-found, which it
// passes through unchanged.
func isNotFound(err error) bool {
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeNotFound {
		return true
	}
	c := amqpCondition(err)
	return c == amqp.ErrCondNotFound || c == "com.microsoft:entity-not-found"
}

// isUnauthorized reports whether err is a management (HTTP) refusal for
// lack of rights: 401 or 403, as for a key without the Manage claim.
func isUnauthorized(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden)
}

// closedErr is the error of an operation op after Close.
func closedErr(op string) error { return &opError{op: op, kinds: []error{ErrClosed}} }

func amqpCondition(err error) amqp.ErrCond {
	var le *amqp.LinkError
	if errors.As(err, &le) && le.RemoteErr != nil {
		return le.RemoteErr.Condition
	}
	var ae *amqp.Error
	if errors.As(err, &ae) && ae != nil {
		return ae.Condition
	}
	return ""
}

// Redact removes what could be a secret from a text: the query of every
// URL, and the values of SharedAccessKey=, SharedAccessSignature=,
// AccountKey=, sig= and the other secrets internal/redact knows.
func Redact(s string) string { return redact.All(s) }
