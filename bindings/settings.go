package bindings

import (
	"fmt"
	"strings"
)

// ExpandSettings replaces each %Name% in expr with the app setting Name as
// lookup returns it, as Azure Functions resolves binding expressions such as
// a queue name "%OrdersQueue%". An unset setting, an empty %% or an unclosed
// % is an error naming it. expr without a % is returned as it is.
func ExpandSettings(expr string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(expr, "%") {
		return expr, nil
	}
	var b strings.Builder
	rest := expr
	for {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		j := strings.IndexByte(rest[i+1:], '%')
		if j < 0 {
			return "", fmt.Errorf("%q has an unclosed %% (write %%SettingName%%)", expr)
		}
		name := rest[i+1 : i+1+j]
		if name == "" {
			return "", fmt.Errorf("%q has an empty %%%% expression", expr)
		}
		var v string
		ok := false
		if lookup != nil {
			v, ok = lookup(name)
		}
		if !ok {
			return "", fmt.Errorf("app setting %s is not set (used in %q)", name, expr)
		}
		b.WriteString(rest[:i])
		b.WriteString(v)
		rest = rest[i+2+j:]
	}
}
