package bindings

import (
	"strings"
	"testing"
)

func TestExpandSettings(t *testing.T) {
	lookup := func(name string) (string, bool) {
		v, ok := map[string]string{"Queue": "orders", "Region": "eu", "Empty": ""}[name]
		return v, ok
	}
	for expr, want := range map[string]string{
		"plain":                "plain",
		"%Queue%":              "orders",
		"%Queue%-%Region%":     "orders-eu",
		"pre-%Region%-post":    "pre-eu-post",
		"x%Empty%y":            "xy",
		"rabbit://%Queue%?a=b": "rabbit://orders?a=b",
	} {
		if got, err := ExpandSettings(expr, lookup); err != nil || got != want {
			t.Errorf("ExpandSettings(%q) = %q, %v; want %q", expr, got, err, want)
		}
	}
	for expr, want := range map[string]string{
		"%Nope%":       "app setting Nope is not set",
		"a%%b":         "empty %% expression",
		"%Queue%-%Reg": "unclosed %",
	} {
		if _, err := ExpandSettings(expr, lookup); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), expr) {
			t.Errorf("ExpandSettings(%q): %v; want an error naming %q and the expression", expr, err, want)
		}
	}
	if _, err := ExpandSettings("%Queue%", nil); err == nil {
		t.Error("a nil lookup sets nothing")
	}
}
