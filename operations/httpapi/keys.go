package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Settings the host reads keys from (see KeysFromSettings).
const (
	// AdminKeySetting holds the admin keys, separated by commas (several
	// allow a key to be rotated).
	AdminKeySetting = "JOBHOST_ADMIN_KEY"
	// CallerKeyPrefix starts the name of a setting holding a caller's keys:
	// JOBHOST_KEY_ORDERS holds the keys of caller "orders".
	CallerKeyPrefix = "JOBHOST_KEY_"
)

// Where a request carries its key, as Azure Functions has it.
const (
	// KeyHeader is the header holding the key.
	KeyHeader = "x-functions-key"
	// KeyParam is the query parameter holding the key when the header is
	// absent.
	KeyParam = "code"
)

// Keys are the keys the API accepts, as Azure Functions' function and host
// keys. An admin key sees and cancels every operation, and submits with no
// RunAs. A caller key submits as its caller (Submission.RunAs), and sees
// and cancels only the operations it submitted: another caller's answer
// 404, so ids do not leak. With no key at all the API serves only loopback
// requests (see Empty).
type Keys struct {
	// Admin holds the admin keys.
	Admin []string
	// Callers maps a caller key to the caller's name; a caller may have
	// several keys.
	Callers map[string]string
}

// KeysFromSettings reads keys from app settings: names lists the settings
// there are (os.Environ's names, a settings file's), lookup reads one.
// JOBHOST_ADMIN_KEY holds admin keys separated by commas; each
// JOBHOST_KEY_<CALLER> holds the keys of caller <caller> (the suffix
// lower-cased), also separated by commas. Names are matched ignoring case;
// blank keys are skipped.
func KeysFromSettings(names []string, lookup func(string) (string, bool)) Keys {
	var k Keys
	seen := map[string]bool{}
	for _, name := range append([]string{AdminKeySetting}, names...) {
		upper := strings.ToUpper(name)
		if seen[upper] {
			continue
		}
		seen[upper] = true
		var caller string
		switch {
		case upper == AdminKeySetting:
		case strings.HasPrefix(upper, CallerKeyPrefix) && len(name) > len(CallerKeyPrefix):
			caller = strings.ToLower(name[len(CallerKeyPrefix):])
		default:
			continue
		}
		v, ok := lookup(name)
		if !ok {
			continue
		}
		for key := range strings.SplitSeq(v, ",") {
			key = strings.TrimSpace(key)
			switch {
			case key == "":
			case caller == "":
				k.Admin = append(k.Admin, key)
			default:
				if k.Callers == nil {
					k.Callers = map[string]string{}
				}
				k.Callers[key] = caller
			}
		}
	}
	return k
}

// Empty reports whether there is no key: the API then serves only loopback
// requests, and the host should say so at start (set JOBHOST_ADMIN_KEY).
func (k Keys) Empty() bool {
	for _, key := range k.Admin {
		if strings.TrimSpace(key) != "" {
			return false
		}
	}
	for key := range k.Callers {
		if strings.TrimSpace(key) != "" {
			return false
		}
	}
	return true
}

// principal is who a request acts as: the admin, or a caller.
type principal struct {
	admin  bool
	caller string
}

// runAs is the Submission.RunAs of the principal's operations.
func (p principal) runAs() string { return p.caller }

// owns reports whether the principal may see and cancel an operation
// submitted as runAs.
func (p principal) owns(runAs string) bool { return p.admin || p.caller == runAs }

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// keyring holds the keys' SHA-256 digests: comparing digests in constant
// time reveals neither a key's bytes nor its length, and the keys
// themselves are not kept.
type keyring struct {
	entries []keyEntry
}

type keyEntry struct {
	sum    [sha256.Size]byte
	admin  bool
	caller string
}

// newKeyring checks the keys (none blank, none both admin and caller's or
// two callers') and digests them. Errors never quote a key.
func newKeyring(k Keys) (*keyring, error) {
	kr := &keyring{}
	owner := map[[sha256.Size]byte]string{}
	add := func(key string, e keyEntry) error {
		if strings.TrimSpace(key) == "" {
			if e.admin {
				return errors.New("httpapi: an admin key is blank")
			}
			return fmt.Errorf("httpapi: a key of caller %q is blank", e.caller)
		}
		e.sum = sha256.Sum256([]byte(key))
		who := "the admin"
		if !e.admin {
			who = fmt.Sprintf("caller %q", e.caller)
		}
		if prev, dup := owner[e.sum]; dup {
			if prev == who {
				return nil
			}
			return fmt.Errorf("httpapi: one key is given to both %s and %s", prev, who)
		}
		owner[e.sum] = who
		kr.entries = append(kr.entries, e)
		return nil
	}
	for _, key := range k.Admin {
		if err := add(key, keyEntry{admin: true}); err != nil {
			return nil, err
		}
	}
	// Sorted, so errors do not depend on the map's order.
	callerKeys := make([]string, 0, len(k.Callers))
	for key := range k.Callers {
		callerKeys = append(callerKeys, key)
	}
	slices.SortFunc(callerKeys, func(a, b string) int {
		return cmp.Or(strings.Compare(k.Callers[a], k.Callers[b]), strings.Compare(a, b))
	})
	for _, key := range callerKeys {
		name := k.Callers[key]
		if strings.TrimSpace(name) == "" {
			return nil, errors.New("httpapi: a caller key has no caller name")
		}
		if err := add(key, keyEntry{caller: name}); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// empty reports whether there are no keys.
func (kr *keyring) empty() bool { return len(kr.entries) == 0 }

// lookup finds the principal of a presented key. It compares the digest
// with every entry, matched or not, so the time taken says nothing of
// which key matched.
func (kr *keyring) lookup(key string) (principal, bool) {
	sum := sha256.Sum256([]byte(key))
	var found principal
	ok := 0
	for _, e := range kr.entries {
		m := subtle.ConstantTimeCompare(sum[:], e.sum[:])
		if m == 1 && ok == 0 {
			found = principal{admin: e.admin, caller: e.caller}
		}
		ok |= m
	}
	return found, ok == 1
}

// authenticate finds who r acts as, or answers the request itself (401,
// 403) and returns false.
func (a *api) authenticate(w http.ResponseWriter, r *http.Request) (principal, bool) {
	if a.keys.empty() {
		if localRequest(r) {
			return principal{admin: true}, true
		}
		writeError(w, http.StatusForbidden, "",
			"no API key is configured, so only local requests are served; set "+AdminKeySetting+" (or "+CallerKeyPrefix+"<CALLER>) to accept others")
		return principal{}, false
	}
	key, from := presentedKey(r)
	if key == "" {
		writeError(w, http.StatusUnauthorized, KeyHeader,
			"a key is required: send it in the "+KeyHeader+" header or the "+KeyParam+" query parameter")
		return principal{}, false
	}
	p, ok := a.keys.lookup(key)
	if !ok {
		a.log.Debug("operations API: a request's key is not valid") // never the key
		writeError(w, http.StatusUnauthorized, from, "the key is not valid")
		return principal{}, false
	}
	return p, true
}

// presentedKey returns the key a request carries and where it was: the
// header wins over the query parameter.
func presentedKey(r *http.Request) (key, from string) {
	if v := r.Header.Get(KeyHeader); v != "" {
		return v, KeyHeader
	}
	return r.URL.Query().Get(KeyParam), KeyParam
}

// localRequest reports whether r comes from a loopback address and not
// through a proxy: a reverse proxy on the same machine makes every request
// look local, so one carrying forwarding headers is not taken as local.
func localRequest(r *http.Request) bool {
	if r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}
