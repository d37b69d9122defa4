package runtime

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers"
)

// TestViewSlabCopiesAreSeparate: the copies a worker makes share no bytes
// with the driver's messages or with each other, even when a function
// appends to its body; large bodies get their own allocation.
func TestViewSlabCopiesAreSeparate(t *testing.T) {
	var s viewSlab
	big := strings.Repeat("b", slabMaxBody+1)
	var orig, views []*triggers.Message
	for i := range 3 * slabMessages {
		body := []byte{byte('a' + i%26), byte('a' + i%26)}
		if i == 5 {
			body = []byte(big)
		}
		m := &triggers.Message{ID: "m", Body: body, Properties: map[string]string{"k": "v"}, DriverData: i}
		orig = append(orig, m)
		views = append(views, s.clone(m, false))
	}
	for i, v := range views {
		if v == orig[i] || v.DriverData != nil || !bytes.Equal(v.Body, orig[i].Body) || v.Properties["k"] != "v" {
			t.Fatalf("view %d = %+v, want a copy of %+v without DriverData", i, v, orig[i])
		}
	}
	views[0].Body = append(views[0].Body, "XYZ"...) // a function growing its body
	views[1].Body[0] = 'Q'
	views[2].Properties["k"] = "changed"
	if string(views[2].Body) != "cc" || string(orig[1].Body) != "bb" || orig[2].Properties["k"] != "v" {
		t.Errorf("writes through one copy reached another or the driver's message: %q %q %v", views[2].Body, orig[1].Body, orig[2].Properties)
	}
	if string(views[5].Body) != big {
		t.Error("a large body was not copied whole")
	}
}
