package servicebus

import (
	"fmt"
	"strings"
)

// Entity names a queue or a topic subscription, or (DeadLetterQueue) its
// dead-letter queue.
type Entity struct {
	// Queue is the queue name; empty for a subscription.
	Queue string
	// Topic and Subscription name a topic subscription.
	Topic, Subscription string
	// DeadLetterQueue reads the entity's dead-letter queue instead.
	DeadLetterQueue bool
}

// Path returns the Service Bus entity path: "<queue>" or
// "<topic>/Subscriptions/<subscription>", with DeadLetterSuffix for a
// dead-letter queue.
func (e Entity) Path() string {
	p := e.Queue
	if p == "" {
		p = e.Topic + "/Subscriptions/" + e.Subscription
	}
	if e.DeadLetterQueue {
		p += DeadLetterSuffix
	}
	return p
}

// String returns Path.
func (e Entity) String() string { return e.Path() }

// Validate reports whether e names exactly one queue or one topic
// subscription, with plausible names.
func (e Entity) Validate() error {
	switch {
	case e.Queue != "" && (e.Topic != "" || e.Subscription != ""):
		return fmt.Errorf("servicebus: entity names both queue %q and topic %q / subscription %q", e.Queue, e.Topic, e.Subscription)
	case e.Queue != "":
		return validName("queue", e.Queue, 260, true)
	case e.Topic == "" && e.Subscription == "":
		return fmt.Errorf("servicebus: entity names no queue and no topic subscription")
	case e.Topic == "":
		return fmt.Errorf("servicebus: subscription %q has no topic", e.Subscription)
	case e.Subscription == "":
		return fmt.Errorf("servicebus: topic %q has no subscription (a topic cannot be received from; name one of its subscriptions)", e.Topic)
	}
	if err := validName("topic", e.Topic, 260, true); err != nil {
		return err
	}
	return validName("subscription", e.Subscription, 50, false)
}

// validName checks the Service Bus naming rules loosely: letters, digits,
// '.', '-', '_' and (for queues and topics) '/' between segments.
func validName(kind, name string, maxLen int, slashes bool) error {
	if len(name) > maxLen {
		return fmt.Errorf("servicebus: %s name %q is %d characters long; at most %d are allowed", kind, name, len(name), maxLen)
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_', c == '~':
		case c == '/' && slashes:
			if i == 0 || i == len(name)-1 || strings.Contains(name, "//") {
				return fmt.Errorf("servicebus: %s name %q has an empty path segment", kind, name)
			}
		default:
			return fmt.Errorf("servicebus: %s name %q has %q at position %d; only letters, digits, '.', '-', '_'%s are allowed", kind, name, c, i, map[bool]string{true: " and '/'", false: ""}[slashes])
		}
	}
	return nil
}
