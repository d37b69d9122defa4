package cli

import (
	"cmp"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/runtime"
)

// version prints what runtime.Version reads from the build, as text and as
// JSON.
func TestVersion(t *testing.T) {
	v := runtime.Version()
	code, out, errOut := run(t, t.TempDir(), registry(), nil, "version")
	want := "jobhost " + v.Version + "\ncommit  " + cmp.Or(v.Revision, "unknown") + "\ngo      " + v.GoVersion + "\n"
	if code != ExitOK || out != want || errOut != "" {
		t.Errorf("version: exit %d, stdout %q (want %q), stderr %q", code, out, want, errOut)
	}
	code, out, _ = run(t, t.TempDir(), registry(), nil, "version", "--output", "json")
	var got versionInfo
	if err := json.Unmarshal([]byte(out), &got); code != ExitOK || err != nil {
		t.Fatalf("version --output json: exit %d, %v: %q", code, err, out)
	}
	if got != (versionInfo{Module: runtime.Module, Version: v.Version, Commit: v.Revision, GoVersion: v.GoVersion}) || !strings.HasPrefix(got.GoVersion, "go") {
		t.Errorf("version --output json = %+v, runtime.Version() = %+v", got, v)
	}
	for _, key := range []string{`"module"`, `"version"`, `"commit"`, `"goVersion"`} {
		if !strings.Contains(out, key) {
			t.Errorf("no %s in %s", key, out)
		}
	}
	if code, _, errOut := run(t, t.TempDir(), registry(), nil, "version", "--output", "yaml"); code != ExitUsage || !strings.Contains(errOut, "--output") {
		t.Errorf("version --output yaml: exit %d, stderr %q", code, errOut)
	}
}
