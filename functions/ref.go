package functions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// Ref names a function whose argument is T. Register, Add, RegisterResult
// and AddResult return it, and the client's typed calls take it
// (client.Enqueue, client.Start), so the compiler checks that what a
// program sends a function is the function's T:
//
//	var ProcessOrder = functions.Register("ProcessOrder", functions.QueueTrigger("orders"), processOrder)
//	…
//	id, err := client.Enqueue(ctx, c, ProcessOrder, Order{ID: 7}) // only an Order compiles
type Ref[T any] struct{ name string }

// NewRef returns the Ref of a function registered by name elsewhere (in the
// worker program, when the caller shares only the argument type).
func NewRef[T any](name string) Ref[T] { return Ref[T]{name: name} }

// Name returns the function's name.
func (r Ref[T]) Name() string { return r.name }

// Encode returns the message body of a value sent to an output or a queue:
// JSON, except that a string, []byte or json.RawMessage goes as it is
// (copied). Collect's Add, a ResultHandler's return value and the client
// all encode with it.
func Encode(v any) ([]byte, error) { return encode(v) }

// ValidationError says why a payload does not fit a function's argument
// type (Definition.Validate).
type ValidationError struct {
	// Field is the JSON path of the offending field ("address.zip"), ""
	// when the payload as a whole is wrong.
	Field string
	// Reason says what is wrong.
	Reason string
}

// Error names the field and the reason.
func (e *ValidationError) Error() string {
	if e.Field == "" {
		return "input: " + e.Reason
	}
	return "input field " + e.Field + ": " + e.Reason
}

// Validate reports whether payload (the decoded message body) binds to the
// function's argument, without calling the function, so a caller can refuse
// a bad input before anything is queued. It is stricter than the binder
// the host uses: a JSON object member the argument's struct type does not
// have is refused, as is data after the JSON value. A string or []byte
// argument takes any payload; json.RawMessage any JSON. Errors are a
// *ValidationError naming the field.
func (d *Definition) Validate(payload []byte) error {
	if d.validate == nil {
		return nil
	}
	return d.validate(payload)
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// newValidator returns the strict validator of T's payloads.
func newValidator[T any]() func([]byte) error {
	var zero T
	switch any(zero).(type) {
	case string, []byte:
		return func([]byte) error { return nil }
	case json.RawMessage:
		return func(p []byte) error {
			if !json.Valid(trimBOM(p)) {
				return &ValidationError{Reason: "not valid JSON"}
			}
			return nil
		}
	}
	t := reflect.TypeFor[T]()
	return func(p []byte) error {
		p = trimBOM(p)
		dec := json.NewDecoder(bytes.NewReader(p))
		dec.DisallowUnknownFields()
		var v T
		if err := dec.Decode(&v); err != nil {
			return validationError(err, p, t)
		}
		if _, err := dec.Token(); err != io.EOF {
			return &ValidationError{Reason: "not valid JSON: data after the JSON value"}
		}
		return nil
	}
}

// validationError turns a decoding error into a *ValidationError.
func validationError(err error, p []byte, t reflect.Type) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return &ValidationError{Field: te.Field, Reason: fmt.Sprintf("got a JSON %s, want %s", te.Value, typeName(te.Type))}
	case errors.As(err, &se):
		return &ValidationError{Reason: fmt.Sprintf("not valid JSON: %v (at byte %d)", se, se.Offset)}
	case err == io.EOF:
		return &ValidationError{Reason: "empty; want JSON"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &ValidationError{Reason: "not valid JSON: it ends early"}
	}
	if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, uerr := strconv.Unquote(rest); uerr == nil {
			return &ValidationError{Field: unknownFieldPath(p, t, name), Reason: "unknown field"}
		}
	}
	return &ValidationError{Reason: err.Error()}
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object (" + t.String() + ")"
	case reflect.Slice, reflect.Array:
		return "an array (" + t.String() + ")"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer (" + t.String() + ")"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// unknownFieldPath finds the first object member named name that t's
// structs do not have and returns its dotted path ("address.zap"), as
// json.UnmarshalTypeError.Field names fields; name when it cannot tell.
func unknownFieldPath(p []byte, t reflect.Type, name string) string {
	dec := json.NewDecoder(bytes.NewReader(p))
	if path, ok, err := findUnknown(dec, t, name, ""); err == nil && ok {
		return path
	}
	return name
}

// findUnknown reads one JSON value from dec, walking t alongside (nil: a
// value only skipped), and reports the path of the first member named name
// that a struct of t lacks.
func findUnknown(dec *json.Decoder, t reflect.Type, name, path string) (string, bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", false, err
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return "", false, nil
	}
	sub := func(p string) string {
		if path == "" {
			return p
		}
		return path + "." + p
	}
	for dec.More() {
		var elem reflect.Type
		elemPath := path
		if delim == '{' {
			kt, err := dec.Token()
			if err != nil {
				return "", false, err
			}
			key, _ := kt.(string)
			elemPath = sub(key)
			switch {
			case t == nil:
			case t.Kind() == reflect.Struct:
				ft, known := structField(t, key)
				if !known && key == name {
					return elemPath, true, nil
				}
				elem = ft
			case t.Kind() == reflect.Map:
				elem = t.Elem()
			}
		} else if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		if found, ok, err := findUnknown(dec, elem, name, elemPath); err != nil || ok {
			return found, ok, err
		}
	}
	_, err = dec.Token() // the closing delimiter
	return "", false, err
}

// structField returns the type of t's field that JSON member key decodes
// into (exact name first, then without regard to case, as encoding/json
// matches), and whether there is one.
func structField(t reflect.Type, key string) (reflect.Type, bool) {
	var folded reflect.Type
	found := false
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		ft := f.Type
		if f.Anonymous && tag == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				continue // its fields are promoted
			}
		}
		n := tag
		if n == "" {
			n = f.Name
		}
		if n == key {
			return f.Type, true
		}
		if !found && strings.EqualFold(n, key) {
			folded, found = f.Type, true
		}
	}
	return folded, found
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// trimBOM drops a leading UTF-8 byte-order mark, as the JSON binder does.
func trimBOM(p []byte) []byte { return bytes.TrimPrefix(p, bom) }
