package triggers_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers"
)

func TestLookupNamesTheImport(t *testing.T) {
	_, err := triggers.Lookup("rabbit")
	var ue *triggers.UnknownSchemeError
	if !errors.As(err, &ue) {
		t.Fatalf("Lookup of an unlinked scheme: %v, want an *UnknownSchemeError", err)
	}
	for _, want := range []string{`import _ "github.com/jobhost/jobhost/triggers/rabbitmq"`, triggers.AllDrivers} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := triggers.Lookup("gopher"); err == nil || !strings.Contains(err.Error(), `unknown scheme "gopher"`) {
		t.Errorf("Lookup of a scheme nobody ships: %v", err)
	}
}

func TestRegister(t *testing.T) {
	open := func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Driver, error) { return nil, nil }
	triggers.Register(triggers.Scheme{Name: "regtest", Subscription: open})
	s, err := triggers.Lookup("regtest")
	if err != nil || s.Subscription == nil {
		t.Fatalf("Lookup after Register = %+v, %v", s, err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("registering a scheme twice did not panic")
			}
		}()
		triggers.Register(triggers.Scheme{Name: "regtest", Subscription: open})
	}()
	restore := triggers.Replace(triggers.Scheme{Name: "regtest", Subscription: open, Publisher: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Publisher, error) {
		return nil, nil
	}})
	if s, _ := triggers.Lookup("regtest"); s.Publisher == nil {
		t.Error("Replace did not replace")
	}
	restore()
	if s, _ := triggers.Lookup("regtest"); s.Publisher != nil {
		t.Error("restore did not restore")
	}
	found := false
	for _, n := range triggers.Registered() {
		found = found || n == "regtest"
	}
	if !found {
		t.Errorf("Registered() = %v lacks regtest", triggers.Registered())
	}
}
