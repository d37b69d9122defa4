// Package webhook signs and verifies HTTP webhooks as Standard Webhooks 1.0
// (https://www.standardwebhooks.com) describes them: three headers,
//
//	webhook-id:        msg_2b5c…            unique per message, the same on every retry
//	webhook-timestamp: 1614265330           Unix seconds of the attempt
//	webhook-signature: v1,g0hM9SsE+OTP…=    one or more space-separated entries
//
// where each v1 entry is the base64 HMAC-SHA256, under one secret, of
// "{webhook-id}.{webhook-timestamp}.{body}". Secrets are written
// "whsec_<base64>" and hold 24 to 64 bytes. A sender holding several secrets
// (while one replaces another) signs with each; a receiver accepts the
// message when any v1 entry matches any of its secrets, so either side can
// rotate first.
//
// A receiver calls Verify (or VerifyRequest) and then uses webhook-id to
// drop messages it has already processed: delivery is at least once.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers. http.Header canonicalises them
// ("Webhook-Id"); header names are case-insensitive.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const (
	// SecretPrefix starts every secret's text form.
	SecretPrefix = "whsec_"
	// MinSecretBytes and MaxSecretBytes bound a secret's decoded size.
	MinSecretBytes = 24
	MaxSecretBytes = 64
	// DefaultTolerance is how far a timestamp may be from now, either way,
	// when Verify is given no tolerance.
	DefaultTolerance = 5 * time.Minute
	// DefaultMaxBody bounds the body VerifyRequest reads when given no
	// bound.
	DefaultMaxBody = 1 << 20
	// newSecretBytes is the size of the secrets NewSecret makes.
	newSecretBytes = 32
)

// The errors Verify and VerifyRequest return (wrapped, with detail: test
// with errors.Is). Each means the request must be rejected.
var (
	// ErrMissingHeaders: webhook-id, webhook-timestamp or webhook-signature
	// is missing or empty.
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	// ErrTimestamp: webhook-timestamp is not Unix seconds, or is outside the
	// tolerance (an old message replayed, or a clock far off).
	ErrTimestamp = errors.New("webhook: timestamp outside the tolerance")
	// ErrSignature: no v1 signature matches any secret.
	ErrSignature = errors.New("webhook: no matching signature")
	// ErrBodyTooLarge: VerifyRequest's body is over its bound.
	ErrBodyTooLarge = errors.New("webhook: body too large")
)

// Secret is a signing key. Its zero value is not a valid secret. It never
// prints its key: String, GoString and fmt's verbs all give a placeholder.
type Secret struct {
	key []byte
}

// ParseSecret reads a secret written "whsec_<base64>" (standard base64,
// padding optional) whose key is 24 to 64 bytes. Surrounding spaces are
// ignored. Its errors describe what is wrong without quoting s.
func ParseSecret(s string) (Secret, error) {
	sec, msg := parseSecret(s)
	if msg != "" {
		return Secret{}, errors.New("webhook: " + msg)
	}
	return sec, nil
}

// parseSecret returns the secret, or what is wrong with it.
func parseSecret(s string) (Secret, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Secret{}, "the secret is empty"
	}
	enc, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, fmt.Sprintf("a secret must start with %q", SecretPrefix)
	}
	var key []byte
	var err error
	if strings.HasSuffix(enc, "=") {
		key, err = base64.StdEncoding.DecodeString(enc)
	} else {
		key, err = base64.RawStdEncoding.DecodeString(enc)
	}
	if err != nil {
		// base64's error gives only an offset, but say it plainly.
		return Secret{}, fmt.Sprintf("the secret after %q is not valid standard base64", SecretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return Secret{}, fmt.Sprintf("the secret holds %d bytes, want %d to %d", len(key), MinSecretBytes, MaxSecretBytes)
	}
	return Secret{key: key}, ""
}

// ParseSecrets reads one or more secrets separated by spaces (several while
// a secret is being rotated). An error names the entry by its position,
// never by its text.
func ParseSecrets(s string) ([]Secret, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, errors.New("webhook: no secret")
	}
	out := make([]Secret, 0, len(fields))
	for i, f := range fields {
		sec, msg := parseSecret(f)
		if msg != "" {
			if len(fields) == 1 {
				return nil, errors.New("webhook: " + msg)
			}
			return nil, fmt.Errorf("webhook: secret %d of %d: %s", i+1, len(fields), msg)
		}
		out = append(out, sec)
	}
	return out, nil
}

// NewSecret returns a new random secret (32 bytes) in its text form, for a
// sender and its receivers to share.
func NewSecret() (string, error) {
	key := make([]byte, newSecretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("webhook: cannot make a secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// IsZero reports whether s is the zero Secret (no key).
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// String returns a placeholder, never the key.
func (s Secret) String() string { return "whsec_[redacted]" }

// GoString returns a placeholder, never the key.
func (s Secret) GoString() string { return "webhook.Secret{[redacted]}" }

// Format prints the placeholder for every verb.
func (s Secret) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// MarshalText returns the placeholder, so encoding a configuration that
// holds a secret does not reveal it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// mac returns the HMAC-SHA256 of the signed content under s.
func (s Secret) mac(id, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	io.WriteString(h, id)
	io.WriteString(h, ".")
	io.WriteString(h, timestamp)
	io.WriteString(h, ".")
	h.Write(body)
	return h.Sum(nil)
}

// Signature returns the v1 signature entry ("v1,<base64>") of a message
// with this id, timestamp and body, under s.
func (s Secret) Signature(id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(s.mac(id, strconv.FormatInt(ts.Unix(), 10), body))
}

// Sign returns the three headers of a message with this id, timestamp (sent
// as Unix seconds) and body: webhook-signature holds one v1 entry per
// secret, in order. Add them to the request:
//
//	for k, v := range webhook.Sign(secrets, id, time.Now(), body) {
//		req.Header[k] = v
//	}
//
// A retry of the same message keeps its id and is signed again with the
// time of the new attempt.
func Sign(secrets []Secret, id string, ts time.Time, body []byte) http.Header {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(s.mac(id, stamp, body)))
	}
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, stamp)
	h.Set(HeaderSignature, strings.Join(sigs, " "))
	return h
}

// Verify checks a received message: the three headers present, a v1 entry
// of webhook-signature matching the body under one of secrets (compared in
// constant time; entries of other versions are ignored), and
// webhook-timestamp within tolerance of now, either way. A tolerance of 0
// means DefaultTolerance; a zero now means time.Now().
//
// It returns nil, or an error wrapping ErrMissingHeaders, ErrSignature or
// ErrTimestamp (an old message replayed with its valid signature gives
// ErrTimestamp). body must be the bytes received, not a re-encoding.
func Verify(secrets []Secret, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	id := header.Get(HeaderID)
	stamp := header.Get(HeaderTimestamp)
	sigHeader := header.Get(HeaderSignature)
	if id == "" || stamp == "" || sigHeader == "" {
		return ErrMissingHeaders
	}
	if len(secrets) == 0 {
		return fmt.Errorf("%w: no secret to verify with", ErrSignature)
	}
	ts, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil || stamp[0] == '+' || stamp[0] == '-' {
		return fmt.Errorf("%w: webhook-timestamp is not Unix seconds", ErrTimestamp)
	}
	var macs [][]byte
	for _, s := range secrets {
		if !s.IsZero() {
			macs = append(macs, s.mac(id, stamp, body))
		}
	}
	if len(macs) == 0 {
		return fmt.Errorf("%w: no secret to verify with", ErrSignature)
	}
	matched := false
	for _, entry := range strings.Fields(sigHeader) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		for _, m := range macs {
			if hmac.Equal(got, m) {
				matched = true
			}
		}
	}
	if !matched {
		return ErrSignature
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if now.IsZero() {
		now = time.Now()
	}
	tol := int64(tolerance / time.Second)
	if n := now.Unix(); ts < n-tol || ts > n+tol {
		return fmt.Errorf("%w: webhook-timestamp is %ds from now, more than the %s allowed", ErrTimestamp, ts-n, tolerance)
	}
	return nil
}

// VerifyRequest reads r's body, at most maxBody bytes (0: DefaultMaxBody),
// and verifies it with Verify against time.Now(). It returns the body,
// which the handler then decodes, only when the message verifies; a longer
// body gives ErrBodyTooLarge. It does not close r.Body (the server does).
func VerifyRequest(r *http.Request, secrets []Secret, maxBody int64, tolerance time.Duration) ([]byte, error) {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if r.Header.Get(HeaderID) == "" || r.Header.Get(HeaderTimestamp) == "" || r.Header.Get(HeaderSignature) == "" {
		return nil, ErrMissingHeaders
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return nil, fmt.Errorf("webhook: cannot read the body: %w", err)
		}
		if int64(len(b)) > maxBody {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, maxBody)
		}
		body = b
	}
	if err := Verify(secrets, r.Header, body, tolerance, time.Time{}); err != nil {
		return nil, err
	}
	return body, nil
}
