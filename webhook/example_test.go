package webhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	"github.com/jobhost/jobhost/webhook"
)

// A receiver of the host's completion callbacks: it verifies each request,
// answers 401 to anything unsigned, forged or replayed, and processes each
// webhook-id once (a notice may arrive twice).
func Example_receiver() {
	// The value of the host's JOBHOST_CALLBACK_SECRET app setting, shared
	// out of band; several secrets separated by spaces while rotating.
	setting := os.Getenv("JOBHOST_CALLBACK_SECRET")
	if setting == "" {
		setting = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	}
	secrets, err := webhook.ParseSecrets(setting)
	if err != nil {
		log.Fatal(err) // the error never contains the secret
	}

	var mu sync.Mutex
	seen := map[string]bool{} // a real receiver keeps this in its database
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := webhook.VerifyRequest(r, secrets, 1<<20, webhook.DefaultTolerance)
		switch {
		case errors.Is(err, webhook.ErrBodyTooLarge):
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		case err != nil:
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get(webhook.HeaderID)
		mu.Lock()
		dup := seen[id]
		seen[id] = true
		mu.Unlock()
		if dup {
			w.WriteHeader(http.StatusNoContent) // already done: acknowledge, do nothing
			return
		}
		var notice struct {
			InvocationID string `json:"invocationId"`
			Status       string `json:"status"`
		}
		if err := json.Unmarshal(body, &notice); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		fmt.Println("notice:", notice.Status)
		w.WriteHeader(http.StatusNoContent)
	})

	// What the host sends, for the example.
	srv := httptest.NewServer(handler)
	defer srv.Close()
	body := []byte(`{"invocationId":"8d0c…","status":"succeeded"}`)
	for range 2 { // a retry: the same id, a fresh timestamp and signature
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		for k, v := range webhook.Sign(secrets, "msg_2b5c0f7e", time.Now(), body) {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	resp, _ := http.Post(srv.URL, "application/json", bytes.NewReader(body)) // unsigned
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// notice: succeeded
	// 204
	// 204
	// 401
}

// Verify works on any header map and body, for frameworks that hand the
// body over already read.
func ExampleVerify() {
	secret, _ := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)

	sent := time.Unix(1614265330, 0)
	fmt.Println(webhook.Verify([]webhook.Secret{secret}, h, body, 5*time.Minute, sent.Add(time.Minute)))
	err := webhook.Verify([]webhook.Secret{secret}, h, body, 5*time.Minute, sent.Add(time.Hour))
	fmt.Println(errors.Is(err, webhook.ErrTimestamp))
	// Output:
	// <nil>
	// true
}

func ExampleNewSecret() {
	s, err := webhook.NewSecret()
	if err != nil {
		log.Fatal(err)
	}
	_, err = webhook.ParseSecret(s)
	fmt.Println(len(s) > len("whsec_"), err)
	// Output: true <nil>
}
