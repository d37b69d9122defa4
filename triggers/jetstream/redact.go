package jetstream

import (
	"fmt"
	"net/url"
	"strings"
)

// redactServerURL validates a server URL list (comma-separated) and returns
// it with credentials replaced, and the credentials to scrub from errors.
// Its errors never quote the URL.
func redactServerURL(s string) (string, []string, error) {
	var parts, secrets []string
	for i, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		raw := p
		if !strings.Contains(p, "://") {
			p = "nats://" + p
		}
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return "", nil, fmt.Errorf("server URL %d is not a valid URL like nats://host:4222 (it is not shown: it may hold credentials)", i+1)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return "", nil, fmt.Errorf("server URL %d has scheme %q; want nats, tls, ws or wss", i+1, u.Scheme)
		}
		if u.User != nil {
			pw, hasPW := u.User.Password()
			userinfo := raw[:strings.LastIndex(raw, "@")]
			if j := strings.Index(userinfo, "://"); j >= 0 {
				userinfo = userinfo[j+3:]
			}
			for _, sec := range []string{pw, u.User.String(), userinfo} {
				if len(sec) >= 3 {
					secrets = append(secrets, sec)
				}
			}
			if !hasPW && len(u.User.Username()) >= 3 { // a token
				secrets = append(secrets, u.User.Username())
			}
			u.User = url.User("REDACTED")
		}
		parts = append(parts, u.String())
	}
	return strings.Join(parts, ","), secrets, nil
}

// scrub removes secrets from err's text.
func scrub(secrets []string, err error) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		clean = strings.ReplaceAll(clean, s, "REDACTED")
	}
	if clean == msg {
		return err
	}
	return &scrubbed{msg: clean, err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }
