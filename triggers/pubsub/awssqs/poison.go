package awssqs

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"path"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	gcaws "gocloud.dev/aws"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

const (
	// holdSeconds is the visibility timeout of a message an operation holds.
	holdSeconds = 60
	// maxReceive is SQS's largest ReceiveMessage.
	maxReceive = 10
	// base64Key is the attribute gocloud sets on a body it base64-encoded.
	base64Key = "base64encoded"
)

// openPoison opens the backend of e's poison queue (a pubsub.Kind Poison),
// with the AWS configuration of the URL's parameters (region, profile...),
// as gocloud's opener reads them.
func openPoison(ctx context.Context, _ *url.URL, e pubsub.Endpoints, _ triggers.OpenOptions) (pubsub.PoisonBackend, error) {
	pu, err := url.Parse(e.Poison)
	if err != nil {
		return nil, err
	}
	cfg, err := gcaws.V2ConfigFromURLParams(ctx, pu.Query())
	if err != nil {
		return nil, err
	}
	return &backend{client: sqs.NewFromConfig(cfg), queue: "https://" + path.Join(pu.Host, pu.Path), name: e.PoisonName}, nil
}

// backend is the pubsub.PoisonBackend of an SQS poison queue, over SQS's
// own API. It is unverified, like the rest of awssqs (no emulator here
// speaks the protocol the SDK sends). Count is SQS's
// ApproximateNumberOfMessages (visible messages only, approximate). List
// receives with a 60 s visibility timeout and makes the messages visible
// again at once, which raises their ApproximateReceiveCount in the poison
// queue; Requeue sends to the source queue and only then deletes; Purge
// deletes. Metadata keys that gocloud had to escape are shown escaped (the
// requeued copy carries them as they were).
type backend struct {
	client      *sqs.Client
	queue, name string
}

// Poison names the poison queue.
func (b *backend) Poison() string { return "queue " + b.name }

// Count reads ApproximateNumberOfMessages; exists is false when the queue
// does not exist.
func (b *backend) Count(ctx context.Context) (int, bool, error) {
	r, err := b.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(b.queue), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages},
	})
	var missing *sqstypes.QueueDoesNotExist
	if errors.As(err, &missing) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	n, _ := strconv.Atoi(r.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	return n, true, nil
}

// Fetch receives up to n messages (ten at most per call), waiting a second
// at most, hidden for holdSeconds.
func (b *backend) Fetch(ctx context.Context, n int) ([]*pubsub.PoisonHeld, error) {
	r, err := b.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(b.queue), MaxNumberOfMessages: int32(min(n, maxReceive)),
		VisibilityTimeout: holdSeconds, WaitTimeSeconds: 1,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
	})
	if err != nil {
		return nil, err
	}
	out := make([]*pubsub.PoisonHeld, 0, len(r.Messages))
	for _, m := range r.Messages {
		body, md := decode(m)
		var at time.Time
		if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			at = time.UnixMilli(ms)
		}
		pm := pubsub.PoisonMessage(aws.ToString(m.MessageId), body, md, 0, at)
		out = append(out, &pubsub.PoisonHeld{Message: pm, Metadata: md, Handle: aws.ToString(m.ReceiptHandle)})
	}
	return out, nil
}

// decode undoes gocloud's encoding of a message: a base64 body where the
// attribute says so, URL-escaped attribute values.
func decode(m sqstypes.Message) ([]byte, map[string]string) {
	body := []byte(aws.ToString(m.Body))
	md := make(map[string]string, len(m.MessageAttributes))
	for k, v := range m.MessageAttributes {
		s := aws.ToString(v.StringValue)
		if k == base64Key {
			if b, err := base64.StdEncoding.DecodeString(string(body)); err == nil {
				body = b
			}
			continue
		}
		if u, err := url.PathUnescape(s); err == nil {
			s = u
		}
		md[k] = s
	}
	return body, md
}

// Release makes hs visible again at once.
func (b *backend) Release(ctx context.Context, hs []*pubsub.PoisonHeld) error {
	var errs []error
	for _, h := range hs {
		_, err := b.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(b.queue), ReceiptHandle: aws.String(h.Handle.(string)), VisibilityTimeout: 0,
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Remove deletes h.
func (b *backend) Remove(ctx context.Context, h *pubsub.PoisonHeld) error {
	_, err := b.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(b.queue), ReceiptHandle: aws.String(h.Handle.(string))})
	return err
}

// Close does nothing: the SQS client holds no connection of its own.
func (b *backend) Close() error { return nil }
