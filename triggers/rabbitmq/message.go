package rabbitmq

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
)

// Settlement states of a delivery.
const (
	stateHeld    int32 = iota // received, not settled
	stateBusy                 // a settle operation is under way
	stateSettled              // acked, nacked, or lost with its channel
)

// delivery is the Driver's private data on a received message.
type delivery struct {
	s     *session
	tag   uint64
	raw   amqp.Delivery
	state atomic.Int32
}

// nackRequeues reports whether Retry(0) can leave the counting to the
// broker: on a quorum queue always (x-delivery-count); on a queue not yet
// known, for a first delivery (the redelivered flag then says one more,
// whatever the queue type).
func (dv *delivery) nackRequeues() bool {
	switch dv.s.kind.Load() {
	case kindQuorum:
		return true
	case kindClassic:
		return false
	}
	return !dv.raw.Redelivered
}

// message maps a delivery taken from the channel at now, learning the
// queue kind from redeliveries, and registers it with the session's acker.
func (d *Driver) message(s *session, dv amqp.Delivery, now time.Time) *triggers.Message {
	s.acks.register(dv.DeliveryTag, now)
	xdc, hasXDC := intHeader(dv.Headers, HeaderDeliveryCount)
	if dv.Redelivered {
		kind := kindClassic
		if hasXDC {
			kind = kindQuorum
		}
		s.kind.CompareAndSwap(kindUnknown, kind)
	}
	count := int64(1)
	if a, ok := intHeader(dv.Headers, HeaderAttempt); ok && a >= 1 {
		count = a
	}
	if dv.Redelivered {
		if hasXDC && xdc >= 1 && s.kind.Load() == kindQuorum {
			count += xdc
		} else {
			count++
		}
	}
	return &triggers.Message{
		ID:            messageID(dv),
		Body:          dv.Body,
		DequeueCount:  count,
		InsertionTime: dv.Timestamp,
		Properties:    properties(dv),
		Source:        d.queue,
		DriverData:    &delivery{s: s, tag: dv.DeliveryTag, raw: dv},
	}
}

// copyOf returns a publishing with the delivery's body, properties and
// headers. forRetry drops the broker's x-delivery-count (it would be wrong
// on a new message). Copies are persistent, carry no expiration, and carry
// the message id the original was received with.
func (d *Driver) copyOf(dv *delivery, forRetry bool) amqp.Publishing {
	r := dv.raw
	h := amqp.Table{}
	maps.Copy(h, r.Headers)
	if forRetry {
		delete(h, HeaderDeliveryCount)
	}
	p := amqp.Publishing{
		Headers:         h,
		ContentType:     r.ContentType,
		ContentEncoding: r.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        r.Priority,
		CorrelationId:   r.CorrelationId,
		ReplyTo:         r.ReplyTo,
		MessageId:       messageID(r),
		Timestamp:       r.Timestamp,
		Type:            r.Type,
		AppId:           r.AppId,
		Body:            r.Body,
	}
	if r.UserId == d.user {
		p.UserId = r.UserId
	}
	return p
}

// intHeader reads an integer header of any AMQP integer type (or a decimal
// string).
func intHeader(h amqp.Table, key string) (int64, bool) {
	switch v := h[key].(type) {
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case int:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// properties returns the string-able headers and the content type.
func properties(dv amqp.Delivery) map[string]string {
	p := make(map[string]string, len(dv.Headers)+1)
	for k, v := range dv.Headers {
		if s, ok := headerString(v); ok {
			p[k] = s
		}
	}
	if dv.ContentType != "" {
		p["content-type"] = dv.ContentType
	}
	return p
}

func headerString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		if utf8.Valid(v) {
			return string(v), true
		}
	case bool:
		return strconv.FormatBool(v), true
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return fmt.Sprint(v), true
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case time.Time:
		return v.UTC().Format(time.RFC3339), true
	case amqp.Decimal:
		return decimalString(v), true
	}
	return "", false
}

func decimalString(d amqp.Decimal) string {
	s := strconv.FormatInt(int64(d.Value), 10)
	if d.Scale == 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for len(s) <= int(d.Scale) {
		s = "0" + s
	}
	s = s[:len(s)-int(d.Scale)] + "." + s[len(s)-int(d.Scale):]
	if neg {
		s = "-" + s
	}
	return s
}

// messageID is the message-id of dv, or for a message published without
// one its derivedID.
func messageID(dv amqp.Delivery) string {
	if dv.MessageId != "" {
		return dv.MessageId
	}
	return derivedID(dv)
}

// derivedID is the id of a message published without message-id: see the
// package documentation.
func derivedID(dv amqp.Delivery) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%q\x00%q\x00%q\x00%q\x00", len(dv.Body), dv.Timestamp.UTC().Format(time.RFC3339Nano), dv.Type, dv.CorrelationId, dv.AppId)
	h.Write(dv.Body)
	for _, k := range slices.Sorted(maps.Keys(dv.Headers)) {
		if brokerHeader(k) {
			continue
		}
		fmt.Fprintf(h, "\x00%q=%#v", k, dv.Headers[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:32]
}

// brokerHeader reports headers set by the broker or by this driver, which
// differ between deliveries of one message.
func brokerHeader(k string) bool {
	return k == HeaderDeliveryCount || k == "x-death" ||
		strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-") ||
		strings.HasPrefix(k, "x-jobhost-")
}

// redactedError has the text of err with secrets removed, and unwraps to
// err.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// userinfoRE finds the password in URLs: scheme://user:password@. The
// password runs to the last @ before white space or a quote.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^\s"'/?#@:]*):[^\s"']*@`)

// redact removes URL passwords and the given secrets from s.
func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, "xxxxx")
		}
	}
	return userinfoRE.ReplaceAllString(s, "$1:xxxxx@")
}

func expiration(delay time.Duration) string {
	ms := (delay + time.Millisecond - 1) / time.Millisecond
	return fmt.Sprint(min(maxOf(int64(ms), 1), maxExpiration))
}

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func maxOf[T int | int64 | time.Duration](a, b T) T {
	if a > b {
		return a
	}
	return b
}
