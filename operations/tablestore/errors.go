package tablestore

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/jobhost/jobhost/internal/redact"
)

// opError is the error the store returns for a failed service call. Its
// text is one line naming the operation, the sentinel it stands for (if
// any) and the service's status, code and message; it never holds a URL
// query (where a SAS would be) or a key. It unwraps to the sentinel and to
// the original error, so errors.As(err, **azcore.ResponseError) and
// errors.Is(err, context.DeadlineExceeded) work.
type opError struct {
	op   string // what was being done, e.g. `get "id"`
	kind error  // operations.ErrNotFound, ...; nil for none
	err  error  // the original error; nil for none
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("tablestore: ")
	b.WriteString(e.op)
	if e.kind != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.kind.Error(), "tablestore: "))
	}
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(describeCause(e.err))
	}
	return b.String()
}

func (e *opError) Unwrap() []error {
	var out []error
	if e.kind != nil {
		out = append(out, e.kind)
	}
	if e.err != nil {
		out = append(out, e.err)
	}
	return out
}

// wrap returns an opError for op.
func wrap(op string, kind, err error) error { return &opError{op: op, kind: kind, err: err} }

// describeCause renders an SDK error as one secret-free line.
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
	msg := redact.All(err.Error())
	// Keep the first line: transport errors can be long.
	msg, _, _ = strings.Cut(msg, "\n")
	return msg
}

// serviceMessage returns the first line of the message in a Table service
// error body ({"odata.error":{"message":{"value":...}}}), or "".
func serviceMessage(re *azcore.ResponseError) string {
	if re.RawResponse == nil {
		return ""
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil || len(body) == 0 {
		return ""
	}
	var doc struct {
		Error struct {
			Message struct {
				Value string `json:"value"`
			} `json:"message"`
		} `json:"odata.error"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return ""
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(doc.Error.Message.Value), "\n")
	return redact.All(strings.TrimSpace(msg))
}

// errorCode returns the service error code of err ("EntityNotFound"), or "".
func errorCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// statusCode returns the HTTP status of err, or 0.
func statusCode(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// isNotFound reports whether err says the entity does not exist (but not
// that the table does not).
func isNotFound(err error) bool {
	return statusCode(err) == 404 && errorCode(err) != "TableNotFound"
}

// isTooLarge reports whether the service refused an entity as too large.
func isTooLarge(err error) bool {
	switch errorCode(err) {
	case "EntityTooLarge", "PropertyValueTooLarge", "RequestBodyTooLarge":
		return true
	}
	return statusCode(err) == 413
}
