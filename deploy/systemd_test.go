package deploy_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relay"
)

const unitFile = "systemd/recallrelay.service"

// unit is a parsed systemd unit file: section -> key -> values, in order
// (a key may be given several times, e.g. SystemCallFilter).
type unit map[string]map[string][]string

// parseUnit reads a unit file as key=value lines under [Section] headers,
// refusing anything else (a line continuation included, which this unit
// does not use).
func parseUnit(data string) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("line %d: line continuation", n)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] != nil {
				return nil, fmt.Errorf("line %d: section [%s] twice", n, section)
			}
			u[section] = map[string][]string{}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" || strings.TrimSpace(key) == "" {
			return nil, fmt.Errorf("line %d: %q is not key=value in a section", n, line)
		}
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	return u, sc.Err()
}

// one returns the only value of key in section, "" when absent.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) > 1 {
		t.Errorf("[%s] %s given %d times: %q", section, key, len(vs), vs)
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// TestSystemdUnitSettings checks the settings the unit exists for: the
// dedicated user, port 25 through one ambient capability, the hardening,
// secrets from an environment file, reload by SIGHUP, a stop timeout above
// the relay's drain time and an open-file limit above its connection
// limits.
func TestSystemdUnitSettings(t *testing.T) {
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(string(data))
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("%s: no [%s] section", unitFile, s)
		}
	}
	want := map[string]string{
		"User":                    "recallrelay",
		"Group":                   "recallrelay",
		"StateDirectory":          "recallrelay",
		"WorkingDirectory":        "/var/lib/recallrelay",
		"EnvironmentFile":         "-/etc/recallrelay/env",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"UMask":                   "0077",
	}
	for k, v := range want {
		if got := u.one(t, "Service", k); got != v {
			t.Errorf("[Service] %s=%q, want %q", k, got, v)
		}
	}
	if u["Service"]["DynamicUser"] != nil {
		t.Errorf("[Service] DynamicUser set beside User=recallrelay")
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q, want multi-user.target", got)
	}
	if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
		t.Errorf("[Service] SystemCallFilter=%q lacks @system-service", u["Service"]["SystemCallFilter"])
	}
	families := strings.Fields(u.one(t, "Service", "RestrictAddressFamilies"))
	for _, f := range []string{"AF_INET", "AF_INET6"} {
		if !slices.Contains(families, f) {
			t.Errorf("[Service] RestrictAddressFamilies=%q lacks %s", families, f)
		}
	}
	if slices.ContainsFunc(families, func(f string) bool { return strings.HasPrefix(f, "~") }) {
		t.Errorf("[Service] RestrictAddressFamilies=%q: want an allow list", families)
	}

	// The relay serves the configuration the README installs, and the
	// state directory is where the embedded store lives.
	start := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(start) < 4 || start[0] != "/usr/local/bin/recallrelay" || start[1] != "serve" ||
		!slices.Contains(start, "--config") || start[slices.Index(start, "--config")+1] != "/etc/recallrelay/recallrelay.yaml" {
		t.Errorf("[Service] ExecStart=%q, want /usr/local/bin/recallrelay serve --config /etc/recallrelay/recallrelay.yaml", start)
	}

	// The stop timeout covers --grace with a margin.
	grace := 30 * time.Second // serve's default
	if i := slices.Index(start, "--grace"); i >= 0 && i+1 < len(start) {
		if grace, err = time.ParseDuration(start[i+1]); err != nil {
			t.Errorf("ExecStart --grace %q: %v", start[i+1], err)
		}
	}
	stop, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v (write it with a unit, e.g. 45s)", err)
	}
	if stop < grace+10*time.Second {
		t.Errorf("TimeoutStopSec=%s, want at least --grace (%s) + 10s, so that SIGKILL never cuts the drain short", stop, grace)
	}

	// Open files: each session on either listener holds its client's
	// connection and one to its next hop.
	nofile, err := strconv.Atoi(u.one(t, "Service", "LimitNOFILE"))
	if err != nil {
		t.Fatalf("LimitNOFILE: %v", err)
	}
	sessions := 2 * relay.DefaultListener().MaxConnections // tenant and return listeners
	if need := 2*sessions + 1024; nofile < need {
		t.Errorf("LimitNOFILE=%d, want at least %d: 2 listeners x %d sessions x 2 connections, plus room", nofile, need, relay.DefaultListener().MaxConnections)
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on a copy of the
// unit whose ExecStart names a binary that exists here (the test binary),
// and fails on anything it reports about the unit: verify exits 0 on
// unknown keys and unparsable values, and only warns.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit was not verified by systemd (its settings are still checked by TestSystemdUnitSettings)")
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := verifyUnit(t, sa, string(data)); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The check catches a misspelt key and an unparsable value.
	for _, tc := range []struct{ from, to, want string }{
		{"\nProtectSystem=strict\n", "\nProtectSytem=strict\n", "Unknown key 'ProtectSytem'"},
		{"\nLimitNOFILE=", "\nLimitNOFILE=lots", "lots"},
	} {
		bad := strings.Replace(string(data), tc.from, tc.to, 1)
		if bad == string(data) {
			t.Fatalf("%s has no %q", unitFile, tc.from)
		}
		if out, err := verifyUnit(t, sa, bad); err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%q passed systemd-analyze verify (%v):\n%s", strings.TrimSpace(tc.to), err, out)
		}
	}
}

// verifyUnit writes unit to a temporary recallrelay.service with ExecStart's
// binary replaced by one that exists, runs systemd-analyze verify on it, and
// returns its output with an error when it failed or said anything about
// the unit.
func verifyUnit(t *testing.T, sa, unitText string) (string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(unitText, "ExecStart=/usr/local/bin/recallrelay ") {
		return "", fmt.Errorf("ExecStart does not start /usr/local/bin/recallrelay")
	}
	unitText = strings.Replace(unitText, "ExecStart=/usr/local/bin/recallrelay ", "ExecStart="+self+" ", 1)
	path := filepath.Join(t.TempDir(), "recallrelay.service")
	if err := os.WriteFile(path, []byte(unitText), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		return out, err
	}
	var about []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "recallrelay.service") {
			about = append(about, line)
		}
	}
	if len(about) > 0 {
		return out, fmt.Errorf("%d complaints about the unit", len(about))
	}
	return out, nil
}
