package azurequeue

import (
	"encoding/xml"
	"errors"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/jobhost/jobhost/internal/redact"
)

// opError is the error every Driver operation returns for a failed service
// call. Its text is one line, names the operation and the service's status
// and error code, and never contains a URL query (where a SAS would be).
// It unwraps to the triggers sentinel errors it stands for (if any) and to
// the original error, so errors.As(err, **azcore.ResponseError) still works.
type opError struct {
	op    string  // what was being done, e.g. `receive from queue "q"`
	kinds []error // triggers.ErrNotFound, triggers.ErrLeaseLost
	err   error   // the original error
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("azurequeue: ")
	b.WriteString(e.op)
	for _, k := range e.kinds {
		b.WriteString(": ")
		b.WriteString(k.Error())
	}
	b.WriteString(": ")
	b.WriteString(describeCause(e.err))
	return b.String()
}

func (e *opError) Unwrap() []error {
	return append(append([]error(nil), e.kinds...), e.err)
}

// describeCause renders an azqueue error as one secret-free line.
func describeCause(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		s := strconv.Itoa(re.StatusCode)
		if re.ErrorCode != "" {
			s += " " + re.ErrorCode
		}
		if msg := serviceMessage(re); msg != "" {
			s += ": " + msg
		}
		return s
	}
	return Redact(err.Error())
}

// serviceMessage returns the first line of the <Message> in a Storage error
// response body, or "".
func serviceMessage(re *azcore.ResponseError) string {
	if re.RawResponse == nil {
		return ""
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil || len(body) == 0 {
		return ""
	}
	var doc struct {
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(body, &doc) != nil {
		return ""
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(doc.Message), "\n")
	return Redact(strings.TrimSpace(msg))
}

// Redact removes what could be a secret from an error text: the query of
// every URL (where a SAS lives), and the values of AccountKey=, sig= and the
// other secrets internal/redact knows.
func Redact(s string) string { return redact.All(s) }

// statusCode returns the HTTP status of an azqueue error, or 0.
func statusCode(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
