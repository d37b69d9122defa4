package functions

import (
	"context"
	"errors"
	"github.com/jobhost/jobhost/internal/invocation"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/triggers"
)

type req struct {
	N int `json:"n"`
}

func TestInvokeBindsAndCalls(t *testing.T) {
	r := &Registry{}
	var got req
	Add(r, "F", QueueTrigger("q"), func(ctx context.Context, in req, msg *triggers.Message) error {
		got = in
		if InvocationID(ctx) != "inv-1" || Logger(ctx) == nil {
			t.Error("invocation context not passed")
		}
		return errors.New("handler error")
	}, BatchSize(3), Timeout(time.Second), MessageEncoding(bindings.None))
	d := r.Functions()[0]
	if *d.Settings.BatchSize != 3 || *d.Settings.FunctionTimeout != time.Second || *d.Settings.MessageEncoding != bindings.None {
		t.Errorf("settings %+v", d.Settings)
	}
	ctx := invocation.With(context.Background(), zap.NewNop(), "inv-1")
	if err := d.Invoke(ctx, []byte(`{"n": 5}`), &triggers.Message{}); err == nil || err.Error() != "handler error" || got.N != 5 {
		t.Errorf("err=%v got=%+v", err, got)
	}
	var be *bindings.Error
	if err := d.Invoke(ctx, []byte(`[`), &triggers.Message{}); !errors.As(err, &be) {
		t.Errorf("bind failure must be a *bindings.Error, got %v", err)
	}
}

func TestRegistrationProblems(t *testing.T) {
	r := &Registry{}
	h := func(ctx context.Context, in string, msg *triggers.Message) error { return nil }
	Add(r, "", QueueTrigger("q"), h)
	Add[string](r, "NilHandler", QueueTrigger("q"), nil)
	Add(r, "NoQueue", QueueTrigger(" "), h)
	Add(r, "Dup", QueueTrigger("q"), h)
	Add(r, "DUP", QueueTrigger("q"), h)
	p := r.Problems()
	if len(p) != 4 {
		t.Fatalf("problems %v", p)
	}
	all := ""
	for _, e := range p {
		all += e.Error() + "\n"
	}
	for _, want := range []string{"empty name", "handler is nil", "empty queue name", "registered more than once"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in %s", want, all)
		}
	}
	if len(r.Functions()) != 1 {
		t.Errorf("only the valid function is kept: %d", len(r.Functions()))
	}
}
