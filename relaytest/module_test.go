package relaytest

import (
	"bytes"
	"go/version"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// modulePath is the path of the module relaytest belongs to.
const modulePath = "github.com/recallrelay/recallrelay"

// ownCodeNeeds is the oldest Go the module's own code builds with:
// sync.WaitGroup.Go (store/storetest) is Go 1.25.
const ownCodeNeeds = "1.25"

// Consumers fetch relaytest as a package of the module with "go get
// github.com/recallrelay/recallrelay/relaytest@vX.Y.Z". The module's go
// directive is a minimum they must meet, so it is the oldest Go the module
// can declare: the newest go directive among the modules its packages and
// their tests build with (go mod tidy raises it to that), and at least what
// its own code needs. A replace directive, which consumers ignore, would
// mean the module builds differently for them than here.
//
// The check lists the test dependencies of every package of the module, so
// it runs only in a checkout of the repository (as in CI), whose go.mod the
// go command then uses; it is skipped when relaytest's tests run from the
// module cache, as when a consumer tests a required version of relaytest.
func TestGoDirectiveIsMinimal(t *testing.T) {
	t.Parallel()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not installed")
	}
	root := ".."
	skipUnlessCheckout(t, goCmd, root)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^module (\S+)$`).FindSubmatch(mod); m == nil || string(m[1]) != modulePath {
		t.Errorf("module path %q", m)
	}
	if regexp.MustCompile(`(?m)^\s*replace\b`).Match(mod) {
		t.Error("go.mod has a replace directive")
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	declared := string(m[1])

	cmd := exec.Command(goCmd, "list", "-deps", "-test", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.GoVersion}}{{end}}{{end}}", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	needed, by := ownCodeNeeds, "the module's own code"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, v, _ := strings.Cut(line, " ")
		if v != "" && version.Compare("go"+v, "go"+needed) > 0 {
			needed, by = v, path
		}
	}
	if declared != needed {
		t.Errorf("go.mod declares go %s; the oldest possible is go %s (required by %s)", declared, needed, by)
	}
}

// skipUnlessCheckout skips t unless the test runs in a checkout of the
// repository: the go command, run in root, uses root's go.mod as the main
// module's, and that go.mod is not in the module cache. (The build
// information of a test binary names the tested package's module as main
// module even when a consumer's module requires it, so it cannot tell.)
func skipUnlessCheckout(t *testing.T, goCmd, root string) {
	t.Helper()
	want, err := filepath.Abs(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goCmd, "env", "GOMOD", "GOMODCACHE")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	gomod, cache, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	wantInfo, err1 := os.Stat(want)
	info, err2 := os.Stat(gomod)
	if err1 != nil || err2 != nil || !os.SameFile(info, wantInfo) {
		t.Skipf("not in a checkout of %s: the go command uses %q, not %s", modulePath, gomod, want)
	}
	if cache == "" {
		return
	}
	realMod, err1 := filepath.EvalSymlinks(want)
	realCache, err2 := filepath.EvalSymlinks(cache)
	if err1 == nil && err2 == nil {
		if rel, err := filepath.Rel(realCache, realMod); err == nil && filepath.IsLocal(rel) {
			t.Skipf("not in a checkout of %s: %s is in the module cache", modulePath, want)
		}
	}
}
