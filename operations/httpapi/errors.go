package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// errorBody is the JSON every error answers with:
// {"error":{"code":"NotFound","message":"…","field":"…"}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	// Code names the status ("BadRequest"), as errorCodes lists them.
	Code string `json:"code"`
	// Message says what is wrong, for a person.
	Message string `json:"message"`
	// Field names the input field, header or query parameter at fault.
	Field string `json:"field,omitempty"`
}

// errorCodes names the statuses the API answers with.
var errorCodes = map[int]string{
	http.StatusBadRequest:            "BadRequest",
	http.StatusUnauthorized:          "Unauthorized",
	http.StatusForbidden:             "Forbidden",
	http.StatusNotFound:              "NotFound",
	http.StatusMethodNotAllowed:      "MethodNotAllowed",
	http.StatusConflict:              "Conflict",
	http.StatusRequestEntityTooLarge: "PayloadTooLarge",
	http.StatusUnsupportedMediaType:  "UnsupportedMediaType",
	http.StatusInternalServerError:   "InternalServerError",
	http.StatusServiceUnavailable:    "ServiceUnavailable",
}

// errorCode returns the code of an error status.
func errorCode(status int) string {
	if c, ok := errorCodes[status]; ok {
		return c
	}
	return "Status" + strconv.Itoa(status)
}

// WriteError answers with an error in the API's JSON shape, for the other
// handlers a host serves beside the API (health, dashboard). field names
// the field or parameter at fault ("" none).
func WriteError(w http.ResponseWriter, status int, field, message string) {
	writeError(w, status, field, message)
}

// writeError answers with an error in the API's JSON shape. field names
// the field or parameter at fault ("" none).
func writeError(w http.ResponseWriter, status int, field, message string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: errorCode(status), Message: message, Field: field}})
}

// writeJSON answers with v encoded as JSON. HTML characters are left as
// they are (URLs keep their '&'). Nothing a client may cache: records
// change.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a bug gets here (every value is encodable): say so in JSON.
		buf.Reset()
		status = http.StatusInternalServerError
		buf.WriteString(`{"error":{"code":"InternalServerError","message":"the response could not be encoded"}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
