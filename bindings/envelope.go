package bindings

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// Meta is the jobhost metadata a message carries besides its payload: the
// background operation it runs for and its W3C trace context (package
// tracing writes and reads it; on Storage Queues only when
// jobhost.tracing.storageQueueBody opts in). On
// brokers with message properties it travels in properties (MetaToProps);
// on Storage Queues, which have none, in the JSON body (WrapMeta).
type Meta struct {
	// OperationID is the id of the background operation the message runs
	// (operations.Record.ID); "" when it runs for none.
	OperationID string `json:"operationId,omitempty"`
	// TraceParent and TraceState are the W3C trace context headers.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// IsZero reports whether m carries nothing.
func (m Meta) IsZero() bool { return m == Meta{} }

// The message properties (headers) that carry Meta on brokers that have
// them.
const (
	// PropOperationID carries Meta.OperationID.
	PropOperationID = "jobhost-operation-id"
	// PropTraceParent carries Meta.TraceParent (the W3C header name).
	PropTraceParent = "traceparent"
	// PropTraceState carries Meta.TraceState (the W3C header name).
	PropTraceState = "tracestate"
	// PropDiagnosticID is the Service Bus property Azure SDKs put the
	// trace context in (traceparent format); read when a message has no
	// traceparent, and written besides it on Service Bus.
	PropDiagnosticID = "Diagnostic-Id"
)

// MetaToProps sets m's non-empty fields in props and returns props, made
// when nil and something is set.
func MetaToProps(m Meta, props map[string]string) map[string]string {
	for _, kv := range [...][2]string{{PropOperationID, m.OperationID}, {PropTraceParent, m.TraceParent}, {PropTraceState, m.TraceState}} {
		if kv[1] == "" {
			continue
		}
		if props == nil {
			props = make(map[string]string, 3)
		}
		props[kv[0]] = kv[1]
	}
	return props
}

// MetaFromProps reads Meta from message properties. Names match exactly,
// else without regard to case (some brokers change the case of headers).
func MetaFromProps(props map[string]string) Meta {
	get := func(name string) string {
		if v, ok := props[name]; ok {
			return v
		}
		for k, v := range props {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return ""
	}
	if len(props) == 0 {
		return Meta{}
	}
	return Meta{OperationID: get(PropOperationID), TraceParent: get(PropTraceParent), TraceState: get(PropTraceState)}
}

// EnvelopeKey is the JSON member that carries Meta in a message body, as
// the body's first member; EnvelopeValueKey holds a payload that is not a
// JSON object.
const (
	EnvelopeKey      = "$jobhost"
	EnvelopeValueKey = "$value"
)

var (
	envelopePrefix = []byte(`{"` + EnvelopeKey + `":`)
	valueKey       = []byte(`"` + EnvelopeValueKey + `"`)
)

// ErrNotJSON is returned by WrapMeta for a payload that is not JSON: only a
// JSON body can carry the metadata.
var ErrNotJSON = errors.New("the payload is not JSON, so it cannot carry jobhost metadata (a Storage Queue message carries it in its JSON body)")

// WrapMeta returns the JSON payload with m as its first member, for brokers
// without message properties (Storage Queues): a JSON object's members are
// kept byte for byte after it,
//
//	{"$jobhost":{"operationId":"…"},"id":7}
//
// and any other JSON value (or an object whose first member is "$value")
// goes whole under "$value":
//
//	{"$jobhost":{"operationId":"…"},"$value":[1,2]}
//
// SplitMeta gives back the payload exactly. A leading UTF-8 byte-order
// mark is dropped (it is not JSON); a payload that is not JSON is
// ErrNotJSON.
func WrapMeta(payload []byte, m Meta) ([]byte, error) {
	p := trimBOM(payload)
	if !json.Valid(p) {
		return nil, ErrNotJSON
	}
	meta, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	lead := skipSpace(p, 0)
	out := make([]byte, 0, len(p)+len(envelopePrefix)+len(meta)+len(valueKey)+4)
	if p[lead] == '{' {
		members := p[lead+1:]
		first := skipSpace(members, 0)
		switch {
		case members[first] == '}': // {} as it was written: {"$jobhost":M}
			out = append(append(append(append(out, p[:lead]...), envelopePrefix...), meta...), members...)
			return out, nil
		case !bytes.HasPrefix(members[first:], valueKey):
			out = append(append(append(out, p[:lead]...), envelopePrefix...), meta...)
			out = append(append(out, ','), members...)
			return out, nil
		}
	}
	out = append(append(out, envelopePrefix...), meta...)
	out = append(append(append(out, ','), valueKey...), ':')
	out = append(append(out, p...), '}')
	return out, nil
}

// SplitMeta reads the metadata WrapMeta put in a body. ok is false, and
// rest is payload, unless payload starts (after an optional byte-order mark
// and whitespace) with {"$jobhost": — a prefix compare, so a message
// without metadata costs nothing more. Otherwise it returns the metadata
// and the original payload exactly: an object's members byte for byte, a
// "$value" unwrapped. A body that starts like an envelope but is not one
// gives ok true and an error (the message cannot be bound).
func SplitMeta(payload []byte) (m Meta, rest []byte, ok bool, err error) {
	i := 0
	if bytes.HasPrefix(payload, bom) {
		i = len(bom)
	}
	i = skipSpace(payload, i)
	if !bytes.HasPrefix(payload[i:], envelopePrefix) {
		return Meta{}, payload, false, nil
	}
	lead := payload[:i]
	body := payload[i+len(envelopePrefix):]
	start := skipSpace(body, 0)
	end := objectEnd(body, start)
	if end < 0 {
		return Meta{}, payload, true, &Error{Reason: "the message's " + EnvelopeKey + " metadata is not a JSON object"}
	}
	// Decoded into a variable of its own: taking m's address would move m
	// to the heap on every call, messages without an envelope included.
	meta := new(Meta)
	if err := json.Unmarshal(body[start:end], meta); err != nil {
		return Meta{}, payload, true, &Error{Reason: "the message's " + EnvelopeKey + " metadata cannot be read", Err: err}
	}
	m = *meta
	after := body[end:]
	next := skipSpace(after, 0)
	switch {
	case next < len(after) && after[next] == ',':
		members := after[next+1:]
		k := skipSpace(members, 0)
		if bytes.HasPrefix(members[k:], valueKey) {
			v := members[k+len(valueKey):]
			c := skipSpace(v, 0)
			last := bytes.LastIndexByte(v, '}')
			if c >= len(v) || v[c] != ':' || last <= c || len(bytes.TrimSpace(v[last+1:])) > 0 {
				return Meta{}, payload, true, &Error{Reason: "the message's " + EnvelopeValueKey + " is malformed"}
			}
			value := v[c+1 : last]
			if len(bytes.TrimSpace(value)) == 0 {
				return Meta{}, payload, true, &Error{Reason: "the message's " + EnvelopeValueKey + " is empty"}
			}
			return m, value, true, nil
		}
		return m, join(lead, members), true, nil
	case next < len(after) && after[next] == '}':
		return m, join(lead, after), true, nil
	}
	return Meta{}, payload, true, &Error{Reason: "the message's " + EnvelopeKey + " metadata is not followed by , or }"}
}

// join returns lead + "{" + tail in a new slice.
func join(lead, tail []byte) []byte {
	out := make([]byte, 0, len(lead)+1+len(tail))
	return append(append(append(out, lead...), '{'), tail...)
}

// skipSpace returns the index of the first byte of p at or after i that is
// not JSON whitespace (len(p) when there is none).
func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// objectEnd returns the index just past the JSON object starting at
// p[start], or -1 when p[start] is not '{' or the object does not end. It
// only matches brackets and skips strings; json.Unmarshal checks the rest.
func objectEnd(p []byte, start int) int {
	if start >= len(p) || p[start] != '{' {
		return -1
	}
	depth, inString := 0, false
	for i := start; i < len(p); i++ {
		c := p[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}
