package client

import (
	"errors"
	"fmt"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/triggers"
)

// ErrNoStore: an operations call on a client whose Options had no Store.
var ErrNoStore = errors.New("the client has no operations store (Options.Store)")

// ErrNotEncodable: a value cannot be encoded as a message body (a channel,
// a function, a cycle: json.Marshal refused it).
var ErrNotEncodable = errors.New("the value cannot be encoded as a message")

// ErrNoProperties: message properties were given for a Storage Queue,
// which has none.
var ErrNoProperties = errors.New("a Storage Queue message has no properties")

// ErrClosed: the client was closed.
var ErrClosed = fmt.Errorf("client: %w", triggers.ErrClosed)

// NotXMLError: under messageEncoding none a Storage Queue message is the
// payload as XML text, and this payload is not text XML can carry (it is
// not valid UTF-8, or holds characters XML 1.0 forbids): the service would
// replace them. Base64 encoding carries any bytes.
type NotXMLError struct {
	// Queue is the Storage Queue.
	Queue string
	// Reason says which byte or character is the problem.
	Reason string
}

// Error says which byte is the problem and that base64 carries it.
func (e *NotXMLError) Error() string {
	return fmt.Sprintf("the message cannot go to Storage Queue %s as it is (messageEncoding none): %s; a queue message is XML text, which would not keep these bytes: send it base64", e.Queue, e.Reason)
}

// Unsendable reports whether err says the message itself cannot be sent,
// so sending it again can never succeed: it is too large, not XML text, not
// encodable, not JSON where metadata must go in its body, has properties a
// Storage Queue cannot carry, does not fit the function's argument, or asks
// a delay the broker does not have. The host's outputs fail such a message
// at once (functions.Permanent); a web app answers 400 rather than 503.
func Unsendable(err error) bool {
	var tooLarge *TooLargeError
	var notXML *NotXMLError
	var input *InputError
	return errors.As(err, &tooLarge) || errors.As(err, &notXML) || errors.As(err, &input) ||
		errors.Is(err, ErrNotEncodable) || errors.Is(err, ErrNoProperties) || errors.Is(err, bindings.ErrNotJSON) ||
		errors.Is(err, ErrDelayUnsupported) || errors.Is(err, triggers.ErrDelayTooLong)
}
