package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

func batchRegistry() *functions.Registry {
	reg := &functions.Registry{}
	functions.AddBatch(reg, "Bulk", functions.QueueTrigger("bulk"), func(context.Context, []order, []*triggers.Message) error { return nil },
		functions.MaxBatchSize(50))
	functions.Add(reg, "One", functions.QueueTrigger("one"), func(context.Context, order, *triggers.Message) error { return nil })
	return reg
}

// Batch sizes come from code, then host.json per function; they are
// checked against each other and the lease.
func TestBatchSettingsResolved(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "jobhost": {"functions": {"Bulk": {"minBatchSize": 10, "maxBatchWait": "00:00:02"}}}}`)
	cfg, err := LoadConfig(p, true, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	funcs, _, err := ResolveFunctions(cfg, batchRegistry(), NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, fc := range funcs {
		switch fc.Name() {
		case "Bulk":
			if b := fc.Batch; b == nil || b.Max != 50 || b.Min != 10 || b.MaxWait != 2*time.Second {
				t.Errorf("Bulk batch = %+v", b)
			}
			if fc.held() != 50+fc.Queues.NewBatchThreshold {
				t.Errorf("Bulk may hold %d, want a batch above the threshold", fc.held())
			}
		case "One":
			if fc.Batch != nil {
				t.Errorf("One has batch settings %+v", fc.Batch)
			}
		}
	}
}

func TestBatchSettingsChecked(t *testing.T) {
	for _, c := range []struct{ json, key string }{
		{`"Bulk": {"minBatchSize": 60}`, "minBatchSize"},
		{`"Bulk": {"minBatchSize": 5}`, "maxBatchWait"},
		{`"Bulk": {"minBatchSize": 5, "maxBatchWait": "00:05:00"}`, "maxBatchWait"}, // the lease is 10 min
		{`"Bulk": {"maxBatchSize": 1001}`, "maxBatchSize"},
		{`"One": {"maxBatchSize": 8}`, "maxBatchSize"},
	} {
		p := writeHostJSON(t, `{"version": "2.0", "jobhost": {"functions": {`+c.json+`}}}`)
		cfg, err := LoadConfig(p, true, NewAppSettings(nil))
		if err == nil {
			_, _, err = ResolveFunctions(cfg, batchRegistry(), NewAppSettings(nil))
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: %v; want one problem naming %s", c.json, err, c.key)
		}
	}
}

// A batch function's Definition can be called directly, as a function's
// tests do, with one outcome per message.
func TestInvokeBatchDirectly(t *testing.T) {
	var got []int
	reg := &functions.Registry{}
	functions.AddBatch(reg, "B", functions.QueueTrigger("b"), func(_ context.Context, in []order, _ []*triggers.Message) error {
		errs := make([]error, len(in))
		for i, o := range in {
			got = append(got, o.ID)
			if o.ID == 2 {
				errs[i] = errors.New("two")
			}
		}
		return functions.BatchErrors(errs)
	})
	d := reg.Functions()[0]
	err := d.InvokeBatch(context.Background(), [][]byte{[]byte(`{"id":1}`), []byte(`{"id":`), []byte(`{"id":2}`)},
		[]*triggers.Message{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	var be *functions.BatchError
	if !errors.As(err, &be) || len(be.Errs) != 3 || be.Errs[0] != nil || be.Errs[1] == nil || be.Errs[2] == nil {
		t.Fatalf("InvokeBatch = %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("the function saw %v; the body that does not bind must be left out", got)
	}
	if err := d.Invoke(context.Background(), []byte(`{"id":2}`), &triggers.Message{}); err == nil || err.Error() != "two" {
		t.Fatalf("Invoke on a batch function = %v; want its one error", err)
	}
}
