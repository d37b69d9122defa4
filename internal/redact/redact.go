// Package redact removes secrets from text before it reaches a log, an
// error or a listing: the one set of rules the runtime and the drivers
// share.
package redact

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Mask replaces a secret's value.
const Mask = "REDACTED"

// secretRules find secrets; each replacement keeps the secret's name and
// puts REDACTED in place of its value. A rule only runs on text containing
// one of its lower-case keywords, which spares most text the regexps.
var secretRules = []struct {
	kw   []string
	re   *regexp.Regexp
	repl string
}{
	// Base64 keys in connection strings run to ';', white space or a quote.
	{[]string{"accountkey", "sharedaccesskey"},
		regexp.MustCompile(`(?i)\b(AccountKey|SharedAccessKey)(\s*=\s*)[^;\s"']+`), "${1}${2}" + Mask},
	// Other connection-string secrets run to ';', a quote, a line break or
	// the end; a quoted value runs to its closing quote ("" and \" escape one).
	{[]string{"sharedaccesssignature", "password", "pwd"},
		regexp.MustCompile(`(?i)\b(SharedAccessSignature|Password|Pwd)(\s*=\s*)(?:"(?:[^"\\]|""|\\.)*"?|(?:\\.|[^;"\\\r\n])+)`), "${1}${2}" + Mask},
	// SAS query parameter.
	{[]string{"sig="}, regexp.MustCompile(`(?i)\b(sig=)[^&\s"']+`), "${1}" + Mask},
	// Authorization headers: "Authorization: Bearer x", `"Authorization":["Basic x"]`.
	{[]string{"authorization"},
		regexp.MustCompile(`(?i)(\bAuthorization["']?\s*[:=]\s*\[?["']?\s*(?:Bearer|Basic)\s+)[^\s"',;\]]+`), "${1}" + Mask},
	// Bearer tokens elsewhere, if long enough not to be prose ("Bearer token").
	{[]string{"bearer"}, regexp.MustCompile(`(?i)\b(Bearer\s+)[\w.~+/-]{16,}=*`), "${1}" + Mask},
	// Storage shared-key signatures: "SharedKey account:signature".
	{[]string{"sharedkey"},
		regexp.MustCompile(`(?i)\b(SharedKey(?:Lite)?\s+[^\s:"',;]+:)[^\s"',;\]]+`), "${1}" + Mask},
	// Passwords in URLs: amqp://user:pass@host.
	{[]string{"://"},
		regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@"']*:)[^\s/?#"']+@`), "${1}" + Mask + "@"},
	// JSON members named like secrets: "password":"x".
	{[]string{"accountkey", "sharedaccess", "password"}, jsonSecret, jsonSecretRepl},
}

// jsonSecret finds JSON members named like secrets. It suits both text and
// encoded JSON, which it keeps valid.
var jsonSecret = regexp.MustCompile(`(?i)("(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password)"\s*:\s*)"(?:[^"\\]|\\.)*"`)

const jsonSecretRepl = `${1}"` + Mask + `"`

// JSONMembers redacts the values of JSON members named like secrets in
// encoded JSON, keeping it valid.
func JSONMembers(b []byte) []byte { return jsonSecret.ReplaceAll(b, []byte(jsonSecretRepl)) }

// Secrets returns s with the values of secrets replaced by Mask, keeping
// their names: AccountKey=, SharedAccessKey=, SharedAccessSignature=,
// Password= and Pwd= settings, SAS sig= parameters, Authorization header
// credentials (Bearer, Basic, SharedKey), passwords in URLs and JSON members
// named like those settings.
func Secrets(s string) string {
	// Every rule needs '=' or ':' in the text, but the Bearer one: most log
	// text (ids, names, outcomes) is spared the work below.
	if !strings.ContainsAny(s, "=:") && !containsFold(s, "bearer") {
		return s
	}
	lower := strings.ToLower(s)
	for _, r := range secretRules {
		if r.kw[0] == "://" && !strings.Contains(s, "@") {
			continue // a URL password needs user:password@
		}
		if slices.ContainsFunc(r.kw, func(kw string) bool { return strings.Contains(lower, kw) }) {
			s = r.re.ReplaceAllString(s, r.repl)
		}
	}
	return s
}

// urlQuery matches a URL (of the schemes drivers meet) and its query.
var urlQuery = regexp.MustCompile(`(?i)((?:https?|sb|amqps?|wss?)://[^\s"'<>?]*)\?[^\s"'<>]*`)

// URLQueries replaces the query of every http(s), sb, amqp(s) and ws(s) URL
// in s with Mask: a SAS token lives there, whatever its parameters are
// called. Drivers apply it to service errors, which quote request URLs.
func URLQueries(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlQuery.ReplaceAllString(s, "$1?"+Mask)
}

// All applies URLQueries, then Secrets.
func All(s string) string { return Secrets(URLQueries(s)) }

// containsFold reports whether s contains the lower-case ASCII word,
// ignoring case, without allocating.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		j := 0
		for ; j < len(word); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != word[j] {
				break
			}
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// DisplayURL is u as logs and listings show it: without credentials or
// query (either may hold a secret).
func DisplayURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery = nil, ""
	return c.String()
}
