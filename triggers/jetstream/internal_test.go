package jetstream

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestSubjects(t *testing.T) {
	for _, tc := range []struct {
		pat, subj string
		want      bool
	}{
		{"a.b", "a.b", true}, {"a.*", "a.b", true}, {"a.*", "a.b.c", false}, {"a.>", "a.b.c", true},
		{"a.>", "a", false}, {">", "a-poison", true}, {"a", "a-poison", false}, {"*.b", "a.b", true},
	} {
		if got := subjectMatches(tc.pat, tc.subj); got != tc.want {
			t.Errorf("subjectMatches(%q, %q) = %v", tc.pat, tc.subj, got)
		}
	}
	for s, ok := range map[string]bool{"a": true, "a.b.>": true, "a.*.c": true, "a..b": false, "a.>.b": false, "a.b*": false, "a b": false, ".a": false} {
		if err := validateSubject(s, true); (err == nil) != ok {
			t.Errorf("validateSubject(%q) = %v", s, err)
		}
	}
	if validateSubject("a.*", false) == nil {
		t.Error("wildcard accepted in a poison subject")
	}
	if got := DefaultConsumerName("S", "a.*.>"); got != "a_+_#" || validateName("consumer", got) != nil {
		t.Errorf("DefaultConsumerName = %q", got)
	}
	if got := DefaultPoisonSubject("S", "x-poison"); got != "" {
		t.Errorf("DefaultPoisonSubject of a poison subject = %q, want none", got)
	}
}

func TestPoisonHeader(t *testing.T) {
	h := nats.Header{
		"Keep":                        {"1", "2"},
		"Nats-Msg-Id":                 {"id-1"},
		"Nats-Expected-Last-Sequence": {"7"},
		"Nats-Rollup":                 {"sub"},
		"Nats-TTL":                    {"1s"},
	}
	got := poisonHeader(h, "why\r\nnot", "S/C", "S", 9)
	if !slices.Equal(got["Keep"], []string{"1", "2"}) || got.Get("Nats-Msg-Id") != "id-1" {
		t.Errorf("kept headers: %v", got)
	}
	for _, k := range []string{"Nats-Expected-Last-Sequence", "Nats-Rollup", "Nats-TTL"} {
		if _, ok := got[k]; ok {
			t.Errorf("publish-control header %s copied", k)
		}
	}
	if got.Get(HeaderReason) != "why  not" || got.Get(HeaderSource) != "S/C" || got.Get(HeaderSourceSequence) != "9" {
		t.Errorf("added headers: %v", got)
	}
	if h.Get(HeaderReason) != "" {
		t.Error("the original header was changed")
	}
	if got := poisonHeader(nil, "", "S/C", "S", 9); got.Get(HeaderMsgID) != "S:9" || got.Get(HeaderReason) != "" {
		t.Errorf("headers of a message without any: %v", got)
	}
	long := cleanReason(strings.Repeat("é", reasonLimit))
	if len(long) > reasonLimit || !strings.HasPrefix(long, "éé") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("cleanReason cut badly: %d bytes", len(long))
	}
}

func TestRedact(t *testing.T) {
	const secret = "pa55word"
	red, secrets, err := redactServerURL("nats://user:" + secret + "@h:4222, tls://t0ken" + secret + "@h2:4222,h3:4222")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(red, secret) || red != "nats://REDACTED@h:4222,tls://REDACTED@h2:4222,nats://h3:4222" {
		t.Errorf("redacted = %q", red)
	}
	d := &Driver{link: link{secrets: secrets}}
	base := errors.New("dial nats://user:" + secret + "@h:4222 failed, token t0ken" + secret)
	err = d.scrub(base)
	if strings.Contains(err.Error(), secret) || !errors.Is(err, base) {
		t.Errorf("scrub = %v", err)
	}
	if _, _, err := redactServerURL("nats://u:" + secret + "@h:port"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("bad URL error = %v", err)
	}
}

func TestPullExpiry(t *testing.T) {
	now := time.Now()
	const w, limit = 2 * time.Second, 2*time.Second + 2*expiryGap
	if got := pullExpiry(now, w, limit, nil); got != w {
		t.Errorf("no redeliveries: %v", got)
	}
	// A redelivery at the expiry: the request ends well before or after it.
	r := now.Add(w + 10*time.Millisecond)
	got := pullExpiry(now, w, limit, []time.Time{r})
	if got != w+10*time.Millisecond-expiryGap {
		t.Errorf("redelivery at expiry: wait %v", got)
	}
	if got := pullExpiry(now, w, limit, []time.Time{now.Add(w - 10*time.Millisecond)}); got != w-10*time.Millisecond+expiryGap {
		t.Errorf("redelivery just before expiry: wait %v", got)
	}
	// Two redeliveries: one pushes the expiry onto the other, beyond the
	// limit: the request ends before the first.
	got = pullExpiry(now, w, limit, []time.Time{now.Add(w), now.Add(w + expiryGap + 50*time.Millisecond)})
	if got != w-expiryGap {
		t.Errorf("two redeliveries: wait %v, want %v", got, w-expiryGap)
	}
	for _, r := range []time.Duration{-time.Second, 0, 100 * time.Millisecond, 5 * time.Second} {
		got := pullExpiry(now, 50*time.Millisecond, 50*time.Millisecond, []time.Time{now.Add(r)})
		if got < 10*time.Millisecond || got > 50*time.Millisecond {
			t.Errorf("short wait with a redelivery at %v: %v", r, got)
		}
	}
}
