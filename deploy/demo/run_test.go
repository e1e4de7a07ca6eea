// Package demo_test checks deploy/demo/run.sh, the round trip with real
// processes on loopback.
package demo_test

import (
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// run.sh knows that delivery is done because the tenant exits by itself
// (--expect all), not by polling log output: before it waits for the
// tenant, no log file is read, only written to.
func TestRunScriptDoesNotPollLogs(t *testing.T) {
	data, err := os.ReadFile("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	waitAt := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == `wait "$tenant_pid" || tenant_status=$?` {
			waitAt = i
		}
	}
	if waitAt < 0 {
		t.Fatal(`run.sh does not wait for the tenant process ("wait "$tenant_pid"")`)
	}
	s := string(data)
	for _, want := range []string{"fakemta\" tenant ", "--compare-dir", "--expect all", "--expect-timeout"} {
		if !strings.Contains(s, want) {
			t.Errorf("run.sh lacks %q", want)
		}
	}
	written := regexp.MustCompile(`[0-9]?>"\$work/[a-z]+\.log"`)
	for i, l := range lines[:waitAt] {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if rest := written.ReplaceAllString(l, ""); strings.Contains(rest, ".log") {
			t.Errorf("run.sh line %d reads a log before the tenant has exited: %s", i+1, l)
		}
		for _, poll := range []string{"tail -f", "grep -q", "inotifywait"} {
			if strings.Contains(l, poll) {
				t.Errorf("run.sh line %d polls (%s): %s", i+1, poll, l)
			}
		}
	}
}

// The script itself: builds recallrelay and fakemta, runs the loop and
// exits 0 once every generated message has arrived intact. It needs bash
// and the loopback ports 2525, 2526, 10025 and 10026; -short skips it.
func TestRunScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries and runs four processes")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	for _, port := range []string{"2525", "2526", "10025", "10026"} {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			t.Skipf("127.0.0.1:%s is in use", port)
		}
	}
	out, err := exec.Command(bash, "run.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"identity summary: 12 deliveries compared, 12 intact, 0 not intact",
		"12 of 12 sent messages delivered",
		"run.sh: every message arrived with its identity intact",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
