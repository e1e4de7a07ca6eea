package deploy_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestReleaseScript checks deploy/release.sh without running its builds
// (a run takes minutes on a small machine): it
// parses (bash -n), passes shellcheck where installed, builds both
// commands for both Linux architectures statically and path-free, stamps
// the VCS revision when .git exists even though GOFLAGS may say
// -buildvcs=false, and writes SHA256SUMS into OUT_DIR.
func TestReleaseScript(t *testing.T) {
	const script = "release.sh"
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(script)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable", script)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Errorf("bash -n %s: %v\n%s", script, err, out)
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, script).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", script, err, out)
		}
	} else {
		t.Log("shellcheck is not installed: only bash -n checked the script")
	}
	s := string(data)
	for _, want := range []string{
		"set -euo pipefail",
		`OUT_DIR:-dist`,
		"linux/amd64 linux/arm64",
		"commands=(recallrelay fakemta)",
		"CGO_ENABLED=0",
		"-trimpath",
		`-buildvcs="$buildvcs"`,
		"[[ -e .git ]]",
		"sha256sum",
		"SHA256SUMS",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %q", script, want)
		}
	}
}
