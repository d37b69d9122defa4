package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/operations"
)

// recordSummary is the JSON of a record as a submission answers with it:
// Dataverse's and Durable Functions' names side by side.
type recordSummary struct {
	ID string `json:"id"`
	// BackgroundOperationID is ID, as Dataverse callers read it.
	BackgroundOperationID string `json:"backgroundOperationId"`
	Name                  string `json:"name"`
	State                 int    `json:"state"`
	StateName             string `json:"stateName"`
	Status                int    `json:"status"`
	StatusName            string `json:"statusName"`
	CreatedOn             string `json:"createdOn"`
	LastUpdated           string `json:"lastUpdated"`
	// Location (Dataverse), StatusQueryGetURI (Durable Functions) and
	// CancelURI (DELETE on it) are the same URL.
	Location          string `json:"location"`
	StatusQueryGetURI string `json:"statusQueryGetUri"`
	CancelURI         string `json:"cancelUri"`
}

// recordJSON is the JSON of a whole record, as GET answers with it.
type recordJSON struct {
	recordSummary
	Input json.RawMessage `json:"input,omitempty"`
	// Output is there once the operation succeeded.
	Output       json.RawMessage `json:"output,omitempty"`
	Progress     json.RawMessage `json:"progress,omitempty"`
	ErrorCode    string          `json:"errorCode,omitempty"`
	ErrorMessage string          `json:"errorMessage,omitempty"`
	StartTime    string          `json:"startTime,omitempty"`
	EndTime      string          `json:"endTime,omitempty"`
	RetryCount   int             `json:"retryCount"`
	Attempt      int             `json:"attempt"`
	RunAs        string          `json:"runAs,omitempty"`
	// CallbackURL is shown without its query, which holds the SAS token
	// of a self-sufficient callback URL.
	CallbackURL    string `json:"callbackUrl,omitempty"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	ExpiresOn      string `json:"expiresOn,omitempty"`
}

// summary returns the submission's view of rec; statusURL is its URL.
func summary(rec *operations.Record, statusURL string) recordSummary {
	return recordSummary{
		ID:                    rec.ID,
		BackgroundOperationID: rec.ID,
		Name:                  rec.Name,
		State:                 int(rec.State()),
		StateName:             rec.State().String(),
		Status:                int(rec.Status),
		StatusName:            rec.Status.String(),
		CreatedOn:             formatTime(rec.CreatedOn),
		LastUpdated:           formatTime(rec.LastUpdated),
		Location:              statusURL,
		StatusQueryGetURI:     statusURL,
		CancelURI:             statusURL,
	}
}

// full returns the whole view of rec. withData includes input and output
// (a listing leaves them out: a page of 1000 could hold a gigabyte).
func full(rec *operations.Record, statusURL string, withData bool) recordJSON {
	j := recordJSON{
		recordSummary:  summary(rec, statusURL),
		Progress:       rawJSON(rec.Progress),
		ErrorCode:      rec.ErrorCode,
		ErrorMessage:   rec.ErrorMessage,
		StartTime:      formatTime(rec.StartTime),
		EndTime:        formatTime(rec.EndTime),
		RetryCount:     rec.RetryCount(),
		Attempt:        rec.Attempt,
		RunAs:          rec.RunAs,
		CallbackURL:    displayCallback(rec.CallbackURL),
		IdempotencyKey: rec.IdempotencyKey,
		ExpiresOn:      formatTime(rec.ExpiresOn),
	}
	if withData {
		j.Input = rawJSON(rec.Input)
		if rec.Status == operations.Succeeded {
			j.Output = rawJSON(rec.Output)
		}
	}
	return j
}

// formatTime writes t in RFC 3339, UTC; "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// rawJSON returns b to embed as a JSON value: nil when empty, and as a
// JSON string if it is not valid JSON (a store should never hold one, but
// the answer must stay valid).
func rawJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// displayCallback shows a callback URL without credentials and with its
// query masked.
func displayCallback(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return redact.All(s)
	}
	d := redact.DisplayURL(u)
	if u.RawQuery != "" {
		d += "?" + redact.Mask
	}
	return d
}

// baseURL returns the scheme and host requests reach the API at:
// the request's own, or the proxy's X-Forwarded-Proto and X-Forwarded-Host
// when trusted.
func (a *api) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if a.trustForwarded {
		if p := strings.ToLower(firstListValue(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstListValue(r.Header.Get("X-Forwarded-Host")); validHost(h) {
			host = h
		}
	}
	if !validHost(host) {
		host = "localhost"
	}
	return scheme + "://" + host
}

// statusURL is the absolute URL of an operation.
func (a *api) statusURL(r *http.Request, id string) string {
	return a.baseURL(r) + a.prefix + "/" + url.PathEscape(id)
}

// listURL is the absolute URL of a listing with the query string query.
func (a *api) listURL(r *http.Request, query string) string {
	u := a.baseURL(r) + a.prefix
	if query != "" {
		u += "?" + query
	}
	return u
}

func firstListValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// validHost reports whether h can be the host of a URL: a name or address
// with an optional port, nothing else (a header could hold anything).
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(".-:[]_", c) >= 0:
		default:
			return false
		}
	}
	return true
}
