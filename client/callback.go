package client

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/jobhost/jobhost/webhook"
)

// OperationCallback is the JSON body the host POSTs to an operation's
// callback URL when it completes: Dataverse's background operation
// callback, plus readable names.
type OperationCallback struct {
	ID           string `json:"backgroundOperationId"`
	State        int    `json:"backgroundOperationStateCode"`
	Status       int    `json:"backgroundOperationStatusCode"`
	StateName    string `json:"backgroundOperationStateName"`
	StatusName   string `json:"backgroundOperationStatusName"`
	ErrorCode    string `json:"backgroundOperationErrorCode,omitempty"`
	ErrorMessage string `json:"backgroundOperationErrorMessage,omitempty"`
	// Location is the operation's status URL on the host's API, when it
	// serves one.
	Location string `json:"location,omitempty"`
}

// ReceiveCallback is the receiver's side of an operation callback, in one
// call: it verifies r's Standard Webhooks signature against secrets (one
// or more whsec_ secrets separated by spaces, as JOBHOST_CALLBACK_SECRET
// holds them) with the timestamp within tolerance (0: 5 minutes), then
// decodes the body. The webhook-id header (WebhookID) is stable across
// retries of one notice: use it to drop duplicates. Errors wrap
// webhook.ErrSignature, webhook.ErrTimestamp, webhook.ErrMissingHeaders or
// webhook.ErrBodyTooLarge; answer them with 401 (400 for a body that does
// not decode).
func ReceiveCallback(r *http.Request, secrets string, tolerance time.Duration) (*OperationCallback, error) {
	keys, err := webhook.ParseSecrets(secrets)
	if err != nil {
		return nil, err
	}
	body, err := webhook.VerifyRequest(r, keys, 1<<20, tolerance)
	if err != nil {
		return nil, err
	}
	var cb OperationCallback
	if err := json.Unmarshal(body, &cb); err != nil {
		return nil, fmt.Errorf("operation callback: %w", err)
	}
	if cb.ID == "" {
		return nil, fmt.Errorf("operation callback: no backgroundOperationId")
	}
	return &cb, nil
}

// WebhookID returns the webhook-id of a callback request.
func WebhookID(r *http.Request) string { return r.Header.Get("webhook-id") }
