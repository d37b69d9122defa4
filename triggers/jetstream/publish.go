package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Publish sends body with props as headers to the driver's subject and
// waits for the stream's acknowledgement (triggers.Publisher). With
// CreateIfMissing a missing stream is created first. It returns the stream
// sequence as the id.
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	subj := d.opts.Subject
	if subj == "" {
		subj = d.opts.Stream
	}
	if strings.ContainsAny(subj, "*>") {
		return "", fmt.Errorf("jetstream: cannot publish to the wildcard subject %q", subj)
	}
	if d.isClosed() {
		return "", d.notConnected("publish")
	}
	msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{}}
	for k, v := range props {
		msg.Header.Set(k, v)
	}
	ack, err := d.js.PublishMsg(ctx, msg)
	if errors.Is(err, natsjs.ErrNoStreamResponse) && d.opts.CreateIfMissing {
		if _, cerr := d.createStream(ctx); cerr != nil {
			return "", d.apiErr("create stream", cerr)
		}
		ack, err = d.js.PublishMsg(ctx, msg)
	}
	if err != nil {
		return "", d.apiErr("publish", err)
	}
	return strconv.FormatUint(ack.Sequence, 10), nil
}
