// Package bindings turns a trigger message into a function's argument: it
// decodes the message encoding (base64 or none) and binds the payload to the
// argument type (string, []byte, json.RawMessage, or any JSON-decodable T).
package bindings

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// Encoding is how a message body is encoded on the queue.
type Encoding string

const (
	// Base64 is the Azure Functions default: the queue text is the base64 of
	// the payload bytes.
	Base64 Encoding = "base64"
	// None means the queue text is the payload itself.
	None Encoding = "none"
)

// ParseEncoding parses a messageEncoding setting (case-insensitive).
func ParseEncoding(s string) (Encoding, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "base64":
		return Base64, nil
	case "none":
		return None, nil
	}
	return "", fmt.Errorf("must be %q or %q, got %q", Base64, None, s)
}

// Decode returns the payload carried by body. Under Base64 a body that is not
// valid base64 gives an error wrapped in *Error. Spaces, tabs, CRs and LFs
// anywhere in the base64 text are ignored, as .NET's
// Convert.FromBase64String ignores them.
func (e Encoding) Decode(body []byte) ([]byte, error) {
	if e != Base64 {
		return body, nil
	}
	if bytes.ContainsAny(body, " \t") { // StdEncoding itself skips CR and LF
		compact := make([]byte, 0, len(body))
		for _, c := range body {
			if c != ' ' && c != '\t' {
				compact = append(compact, c)
			}
		}
		body = compact
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(body)))
	n, err := base64.StdEncoding.Decode(out, body)
	if err != nil {
		return nil, &Error{Reason: "message is not valid base64 (messageEncoding is base64)", Err: err}
	}
	return out[:n], nil
}

// Encode returns the queue text that carries payload.
func (e Encoding) Encode(payload []byte) []byte {
	if e != Base64 {
		return payload
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(payload)))
	base64.StdEncoding.Encode(out, payload)
	return out
}

// Error is a message that cannot be turned into the function's argument. The
// runtime poisons such a message on its first delivery: retrying cannot help.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Binder decodes a payload into a T. Build it once with NewBinder; it does no
// reflection per message beyond what encoding/json needs.
type Binder[T any] func(payload []byte) (T, error)

// bom is the UTF-8 byte-order mark that .NET writers (Encoding.UTF8's
// preamble) put before the text.
var bom = []byte{0xEF, 0xBB, 0xBF}

// trimBOM returns p without a leading UTF-8 byte-order mark.
func trimBOM(p []byte) []byte { return bytes.TrimPrefix(p, bom) }

// NewBinder returns the binder for T: string and []byte receive the payload
// as is (a leading UTF-8 byte-order mark included, as WebJobs passes
// strings), json.RawMessage receives it after a validity check, and any
// other type is decoded from JSON. JSON binding (json.RawMessage included)
// skips a leading byte-order mark, as WebJobs' does, so that RawMessage
// holds valid JSON. A JSON payload that does not fit T gives an *Error.
func NewBinder[T any]() Binder[T] {
	var zero T
	switch any(zero).(type) {
	case string:
		return func(p []byte) (T, error) {
			var v T
			*any(&v).(*string) = string(p)
			return v, nil
		}
	case []byte:
		return func(p []byte) (T, error) {
			var v T
			*any(&v).(*[]byte) = p
			return v, nil
		}
	case json.RawMessage:
		return func(p []byte) (T, error) {
			var v T
			p = trimBOM(p)
			if !json.Valid(p) {
				return v, &Error{Reason: "message is not valid JSON"}
			}
			*any(&v).(*json.RawMessage) = json.RawMessage(p)
			return v, nil
		}
	}
	typeName := fmt.Sprintf("%T", zero)
	return func(p []byte) (T, error) {
		var v T
		if err := json.Unmarshal(trimBOM(p), &v); err != nil {
			return v, &Error{Reason: "message cannot be bound to " + typeName, Err: err}
		}
		return v, nil
	}
}
