package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks specification's published test vector (also in its
// reference libraries): reproducing it exactly is what says a receiver's
// library accepts what this package signs.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	sec, err := ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestSpecTestVector(t *testing.T) {
	sec := mustSecret(t, vectorSecret)
	ts := time.Unix(vectorTimestamp, 0)
	if got := sec.Signature(vectorID, ts, []byte(vectorBody)); got != vectorSignature {
		t.Errorf("Signature = %s, want %s", got, vectorSignature)
	}
	h := Sign([]Secret{sec}, vectorID, ts, []byte(vectorBody))
	for k, want := range map[string]string{
		"webhook-id":        vectorID,
		"webhook-timestamp": "1614265330",
		"webhook-signature": vectorSignature,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if len(h) != 3 {
		t.Errorf("Sign returned %d headers, want 3: %v", len(h), h)
	}
	// The receiver side, with the spec's headers written in lower case as
	// they arrive on the wire.
	wire := http.Header{}
	wire["webhook-id"] = []string{vectorID}
	wire["webhook-timestamp"] = []string{"1614265330"}
	wire["webhook-signature"] = []string{vectorSignature}
	if err := Verify([]Secret{sec}, http.Header(canonical(wire)), []byte(vectorBody), 0, ts); err != nil {
		t.Errorf("Verify of the test vector: %v", err)
	}
}

// canonical re-keys h as net/http does for a received request.
func canonical(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		for _, x := range v {
			out.Add(k, x)
		}
	}
	return out
}

func TestParseSecret(t *testing.T) {
	key24 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 24))
	key64 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 64))
	for _, ok := range []string{
		vectorSecret,
		"whsec_" + key24,
		"whsec_" + key64,
		"  whsec_" + key24 + "\n",
		"whsec_" + base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 25)), // unpadded
	} {
		if _, err := ParseSecret(ok); err != nil {
			t.Errorf("ParseSecret(%q): %v", ok, err)
		}
	}
	const marker = "SECRETXYZ"
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `start with "whsec_"`},
		{"whsec_" + marker + "!!!!", "not valid standard base64"},
		{"whsec_" + marker + "-_-_", "not valid standard base64"}, // URL alphabet
		{"whsec_" + base64.StdEncoding.EncodeToString([]byte(marker+"short")), "holds 14 bytes, want 24 to 64"},
		{"whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte(marker), 8)), "holds 72 bytes"},
		{"whsec_", "holds 0 bytes"},
	} {
		_, err := ParseSecret(c.in)
		if err == nil {
			t.Errorf("ParseSecret(%q) succeeded", c.in)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseSecret(%q) = %v, want %q in it", c.in, err, c.want)
		}
		enc := strings.TrimPrefix(c.in, "whsec_")
		if strings.Contains(err.Error(), marker) || (len(enc) > 4 && strings.Contains(err.Error(), enc)) {
			t.Errorf("ParseSecret's error echoes the secret: %v", err)
		}
	}
}

func TestParseSecrets(t *testing.T) {
	a, _ := NewSecret()
	b, _ := NewSecret()
	got, err := ParseSecrets(" " + a + "  " + b + " ")
	if err != nil || len(got) != 2 {
		t.Fatalf("ParseSecrets = %d, %v", len(got), err)
	}
	_, err = ParseSecrets(a + " whsec_SECRETXYZ!")
	if err == nil || !strings.Contains(err.Error(), "secret 2 of 2") || strings.Contains(err.Error(), "SECRETXYZ") {
		t.Errorf("ParseSecrets with a bad second entry: %v", err)
	}
	if _, err := ParseSecrets("  "); err == nil {
		t.Error("ParseSecrets of blanks succeeded")
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if a == b || !strings.HasPrefix(a, "whsec_") {
		t.Errorf("NewSecret = %q, %q", a, b)
	}
	s := mustSecret(t, a)
	if len(s.key) != 32 {
		t.Errorf("key is %d bytes, want 32", len(s.key))
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := mustSecret(t, vectorSecret)
	type holder struct {
		Secrets []Secret
		One     Secret
	}
	h := holder{Secrets: []Secret{s}, One: s}
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	raw := string(s.key)
	enc := strings.TrimPrefix(vectorSecret, "whsec_")
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x %d", s, s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", h, h, h), string(j), s.String(), s.GoString(),
	} {
		if strings.Contains(out, enc) || strings.Contains(out, raw) || strings.Contains(out, fmt.Sprintf("%x", s.key)) ||
			strings.Contains(out, fmt.Sprint(s.key)) {
			t.Errorf("secret printed: %s", out)
		}
	}
}

func TestSignSeveralSecrets(t *testing.T) {
	old := mustSecret(t, vectorSecret)
	nw, _ := NewSecret()
	next := mustSecret(t, nw)
	ts := time.Unix(vectorTimestamp, 0)
	h := Sign([]Secret{old, next}, vectorID, ts, []byte(vectorBody))
	entries := strings.Split(h.Get(HeaderSignature), " ")
	if len(entries) != 2 || entries[0] != vectorSignature || entries[1] != next.Signature(vectorID, ts, []byte(vectorBody)) {
		t.Fatalf("signature header = %q", h.Get(HeaderSignature))
	}
	// A receiver holding either secret, or both, accepts it.
	for _, recv := range [][]Secret{{old}, {next}, {next, old}} {
		if err := Verify(recv, h, []byte(vectorBody), 0, ts); err != nil {
			t.Errorf("receiver with %d secret(s): %v", len(recv), err)
		}
	}
	// A receiver that has rotated to a secret the sender does not hold yet,
	// keeping the old one, accepts a message signed with the old one only.
	h1 := Sign([]Secret{old}, vectorID, ts, []byte(vectorBody))
	if err := Verify([]Secret{next, old}, h1, []byte(vectorBody), 0, ts); err != nil {
		t.Errorf("receiver with new+old, sender with old: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	sec := mustSecret(t, vectorSecret)
	other, _ := NewSecret()
	otherSec := mustSecret(t, other)
	ts := time.Unix(vectorTimestamp, 0)
	body := []byte(vectorBody)
	good := func() http.Header { return Sign([]Secret{sec}, vectorID, ts, body) }
	with := func(k, v string) http.Header {
		h := good()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	stamp := func(d time.Duration) http.Header {
		return Sign([]Secret{sec}, vectorID, ts.Add(d), body)
	}
	for _, c := range []struct {
		name    string
		secrets []Secret
		h       http.Header
		body    string
		tol     time.Duration
		want    error
	}{
		{"no id", []Secret{sec}, with(HeaderID, ""), vectorBody, 0, ErrMissingHeaders},
		{"no timestamp", []Secret{sec}, with(HeaderTimestamp, ""), vectorBody, 0, ErrMissingHeaders},
		{"no signature", []Secret{sec}, with(HeaderSignature, ""), vectorBody, 0, ErrMissingHeaders},
		{"no headers", []Secret{sec}, http.Header{}, vectorBody, 0, ErrMissingHeaders},
		{"body changed", []Secret{sec}, good(), `{"test": 2432232315}`, 0, ErrSignature},
		{"id changed", []Secret{sec}, with(HeaderID, "msg_other"), vectorBody, 0, ErrSignature},
		{"timestamp changed", []Secret{sec}, with(HeaderTimestamp, "1614265331"), vectorBody, 0, ErrSignature},
		{"other secret", []Secret{otherSec}, good(), vectorBody, 0, ErrSignature},
		{"no secrets", nil, good(), vectorBody, 0, ErrSignature},
		{"zero secret", []Secret{{}}, good(), vectorBody, 0, ErrSignature},
		{"other version only", []Secret{sec}, with(HeaderSignature, strings.Replace(vectorSignature, "v1,", "v2,", 1)), vectorBody, 0, ErrSignature},
		{"v1a entry", []Secret{sec}, with(HeaderSignature, "v1a,"+strings.TrimPrefix(vectorSignature, "v1,")), vectorBody, 0, ErrSignature},
		{"garbage", []Secret{sec}, with(HeaderSignature, "v1,!!!! nonsense ,,, v1"), vectorBody, 0, ErrSignature},
		{"truncated", []Secret{sec}, with(HeaderSignature, vectorSignature[:20]), vectorBody, 0, ErrSignature},
		{"unsigned hex", []Secret{sec}, with(HeaderSignature, "sha256=abcdef"), vectorBody, 0, ErrSignature},
		{"timestamp not a number", []Secret{sec}, with(HeaderTimestamp, "yesterday"), vectorBody, 0, ErrTimestamp},
		{"timestamp with sign", []Secret{sec}, with(HeaderTimestamp, "+1614265330"), vectorBody, 0, ErrTimestamp},
		{"timestamp in ms", []Secret{sec}, func() http.Header {
			h := with(HeaderTimestamp, "1614265330000") // signed as such, so only the tolerance rejects it
			h.Set(HeaderSignature, "v1,"+base64.StdEncoding.EncodeToString(sec.mac(vectorID, "1614265330000", body)))
			return h
		}(), vectorBody, 0, ErrTimestamp},
		{"too old", []Secret{sec}, stamp(-5*time.Minute - time.Second), vectorBody, 0, ErrTimestamp},
		{"too new", []Secret{sec}, stamp(5*time.Minute + time.Second), vectorBody, 0, ErrTimestamp},
		{"too old for 30s", []Secret{sec}, stamp(-31 * time.Second), vectorBody, 30 * time.Second, ErrTimestamp},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.secrets, c.h, []byte(c.body), c.tol, ts)
			if !errors.Is(err, c.want) {
				t.Errorf("Verify = %v, want %v", err, c.want)
			}
			for _, other := range []error{ErrMissingHeaders, ErrSignature, ErrTimestamp} {
				if other != c.want && errors.Is(err, other) {
					t.Errorf("Verify = %v, is also %v", err, other)
				}
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	sec := mustSecret(t, vectorSecret)
	ts := time.Unix(vectorTimestamp, 0)
	body := []byte(vectorBody)
	for _, c := range []struct {
		name string
		h    http.Header
		now  time.Time
		tol  time.Duration
	}{
		{"at the edge, old", Sign([]Secret{sec}, vectorID, ts.Add(-5*time.Minute), body), ts, 0},
		{"at the edge, new", Sign([]Secret{sec}, vectorID, ts.Add(5*time.Minute), body), ts, 0},
		{"wider tolerance", Sign([]Secret{sec}, vectorID, ts.Add(-time.Hour), body), ts, 2 * time.Hour},
		{"among other entries", func() http.Header {
			h := Sign([]Secret{sec}, vectorID, ts, body)
			h.Set(HeaderSignature, "v1a,xyz v1,bm9wZQ==  "+h.Get(HeaderSignature)+" v2,abc")
			return h
		}(), ts, 0},
	} {
		if err := Verify([]Secret{sec}, c.h, body, c.tol, c.now); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// A zero now is the current time.
	if err := Verify([]Secret{sec}, Sign([]Secret{sec}, "msg_now", time.Now(), body), body, 0, time.Time{}); err != nil {
		t.Errorf("zero now: %v", err)
	}
}

func TestVerifyRequest(t *testing.T) {
	sec := mustSecret(t, vectorSecret)
	body := []byte(`{"ok":true}`)
	req := func(b []byte, h http.Header) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(b))
		for k, v := range h {
			r.Header[k] = v
		}
		return r
	}
	got, err := VerifyRequest(req(body, Sign([]Secret{sec}, "msg_1", time.Now(), body)), []Secret{sec}, 0, 0)
	if err != nil || string(got) != string(body) {
		t.Errorf("VerifyRequest = %q, %v", got, err)
	}
	// The bound: exactly maxBody is fine, one more byte is not.
	big := bytes.Repeat([]byte("x"), 100)
	if _, err := VerifyRequest(req(big, Sign([]Secret{sec}, "msg_2", time.Now(), big)), []Secret{sec}, 100, 0); err != nil {
		t.Errorf("body at the bound: %v", err)
	}
	if _, err := VerifyRequest(req(big, Sign([]Secret{sec}, "msg_3", time.Now(), big)), []Secret{sec}, 99, 0); !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("body over the bound: %v", err)
	}
	if _, err := VerifyRequest(req(body, nil), []Secret{sec}, 0, 0); !errors.Is(err, ErrMissingHeaders) {
		t.Errorf("unsigned request: %v", err)
	}
	old := Sign([]Secret{sec}, "msg_4", time.Now().Add(-time.Hour), body)
	if got, err := VerifyRequest(req(body, old), []Secret{sec}, 0, 0); !errors.Is(err, ErrTimestamp) || got != nil {
		t.Errorf("replayed request: %q, %v", got, err)
	}
	if got, err := VerifyRequest(req([]byte(`{"ok":false}`), Sign([]Secret{sec}, "msg_5", time.Now(), body)), []Secret{sec}, 0, 0); !errors.Is(err, ErrSignature) || got != nil {
		t.Errorf("tampered request: %q, %v", got, err)
	}
}
