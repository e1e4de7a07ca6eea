package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/config"
)

// The compose file's schema, as far as compose.yaml uses it: decoding is
// strict, so a key outside it (a misspelling, or a new key the test does
// not know) fails the test.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]*struct{} `yaml:"volumes"`
	Secrets map[string]struct {
		File        string `yaml:"file"`
		Environment string `yaml:"environment"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
		Target     string `yaml:"target"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	Ports       []string          `yaml:"ports"`
	ReadOnly    bool              `yaml:"read_only"`
	Tmpfs       []string          `yaml:"tmpfs"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	StopGrace   string            `yaml:"stop_grace_period"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Networks []string `yaml:"networks"`
	Restart  string   `yaml:"restart"`
	Profiles []string `yaml:"profiles"`
}

const (
	composePath    = "docker/compose.yaml"
	dockerfilePath = "docker/Dockerfile"
	relayConfigIn  = "/etc/recallrelay/recallrelay.yaml" // where the image's CMD reads its configuration
)

// flagValue returns the value after flag in args, "" without one.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := decodeStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	return c
}

// TestComposeStrict rejects a misspelt key, so that the strict decoding
// the other tests rely on really is strict.
func TestComposeStrict(t *testing.T) {
	data, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "stop_grace_period:", "stop_grace_periode:", 1)
	var c composeFile
	if err := decodeStrict([]byte(bad), &c); err == nil || !strings.Contains(err.Error(), "stop_grace_periode") {
		t.Errorf("a misspelt compose key decoded: %v", err)
	}
}

// TestComposeSmokeTest checks compose.yaml against the files it names and
// against itself: every mounted file exists and every relay configuration
// passes the relay's validation with the secrets the service is given;
// the relays' listeners, the fake tenant's and vendor's addresses, the
// published ports, the network's subnet and allow_nets agree; Redis keeps
// an append-only file; a relay is given more time to stop than --grace.
func TestComposeSmokeTest(t *testing.T) {
	c := readCompose(t)
	dir := filepath.Dir(composePath)
	stages := dockerfileStages(t)

	var subnets []string
	for name, n := range c.Networks {
		for _, cfg := range n.IPAM.Config {
			if cfg.Subnet == "" {
				t.Errorf("network %s: ipam config without subnet", name)
			}
			subnets = append(subnets, cfg.Subnet)
		}
	}
	for name, s := range c.Secrets {
		if (s.File == "") == (s.Environment == "") {
			t.Errorf("secret %s: want exactly one of file and environment", name)
		}
		if s.File != "" {
			if _, err := os.Stat(filepath.Join(dir, s.File)); err != nil {
				t.Errorf("secret %s: %v", name, err)
			}
		}
	}

	// Each service: its image, its mounts, its secrets.
	listenOn := map[string]int{} // "service:port" -> 1, for the SMTP servers
	relays := map[string]*config.Config{}
	for name, s := range c.Services {
		if s.Build != nil {
			ctx := filepath.Join(dir, s.Build.Context)
			if _, err := os.Stat(filepath.Join(ctx, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s: build: %v", name, err)
			}
			if !slices.Contains(stages, s.Build.Target) {
				t.Errorf("service %s: build target %q is not a stage of %s (%q)", name, s.Build.Target, dockerfilePath, stages)
			}
		} else if s.Image == "" {
			t.Errorf("service %s: neither build nor image", name)
		}
		for _, net := range s.Networks {
			if _, ok := c.Networks[net]; !ok {
				t.Errorf("service %s: network %s is not declared", name, net)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("service %s: depends on unknown service %s", name, dep)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("service %s: secret %s is not declared", name, sec)
			}
		}
		var configFile string
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("service %s: volume %q: want SOURCE:TARGET[:MODE]", name, v)
				continue
			}
			src, target := parts[0], parts[1]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Errorf("service %s: mounts %s: %v", name, src, err)
				}
				if len(parts) < 3 || parts[2] != "ro" {
					t.Errorf("service %s: %s is mounted writable", name, src)
				}
				if target == relayConfigIn {
					configFile = filepath.Join(dir, src)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("service %s: volume %s is not declared", name, src)
			}
		}
		switch {
		case s.Build != nil && s.Build.Target == "recallrelay":
			if configFile == "" {
				t.Errorf("service %s: no configuration mounted at %s", name, relayConfigIn)
				continue
			}
			relays[name] = checkComposeRelay(t, name, s, configFile, subnets)
			for _, lg := range []config.Listener{relays[name].Listeners.Tenant, relays[name].Listeners.Return} {
				listenOn[name+":"+strconv.Itoa(portOf(lg.Listen))] = 1
			}
		case s.Build != nil && s.Build.Target == "fakemta" && len(s.Command) > 0 && s.Command[0] != "send":
			listenOn[name+":"+strconv.Itoa(portOf(flagValue(s.Command, "--listen")))] = 1
		}
	}
	if len(relays) != 2 {
		t.Fatalf("%d relay services, want 2", len(relays))
	}

	// Where each relay sends, something listens; the vendor returns mail
	// to a relay's return leg and the sender reaches a relay's tenant leg.
	returnLegs, tenantLegs := map[string]bool{}, map[string]bool{}
	var keyIDs [][]string
	var prefixes []string
	for name, cfg := range relays {
		returnLegs[name+":"+strconv.Itoa(portOf(cfg.Listeners.Return.Listen))] = true
		tenantLegs[name+":"+strconv.Itoa(portOf(cfg.Listeners.Tenant.Listen))] = true
		for _, hop := range append([]string{cfg.Tenant.Address}, vendorAddrs(cfg)...) {
			if listenOn[hop] == 0 {
				t.Errorf("relay %s sends to %s, where no service listens", name, hop)
			}
		}
		var ids []string
		for _, k := range cfg.Reference.Keys {
			ids = append(ids, k.ID)
		}
		keyIDs = append(keyIDs, ids)
		prefixes = append(prefixes, cfg.Store.Redis.KeyPrefixInUse())
		if cfg.Store.Embedded() {
			t.Errorf("relay %s: embedded store; two relays must share Redis", name)
		} else if !strings.Contains(string(cfg.Store.Redis.URL), "//redis:") {
			t.Errorf("relay %s: store.redis.url %s is not the compose service redis", name, cfg.Store.Redis.URL)
		}
	}
	if !slices.Equal(keyIDs[0], keyIDs[1]) || prefixes[0] != prefixes[1] {
		t.Errorf("the relays do not share their keys (%q) and key prefix (%q)", keyIDs, prefixes)
	}
	var sawVendor, sawSender bool
	for name, s := range c.Services {
		if s.Build == nil || s.Build.Target != "fakemta" || len(s.Command) == 0 {
			continue
		}
		switch s.Command[0] {
		case "vendor":
			sawVendor = true
			if ret := flagValue(s.Command, "--return"); !returnLegs[ret] {
				t.Errorf("vendor %s returns to %s, not a relay's return leg (%v)", name, ret, returnLegs)
			}
		case "send":
			sawSender = true
			if to := flagValue(s.Command, "--to"); !tenantLegs[to] {
				t.Errorf("sender %s sends to %s, not a relay's tenant leg (%v)", name, to, tenantLegs)
			}
			if !slices.Contains(s.Profiles, "smoke") {
				t.Errorf("sender %s runs on every up: want profiles [smoke]", name)
			}
		}
	}
	if !sawVendor || !sawSender {
		t.Errorf("no fake vendor or no sender service")
	}

	redis, ok := c.Services["redis"]
	if !ok {
		t.Fatal("no redis service")
	}
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %s", cmd, want)
		}
	}
	if !slices.ContainsFunc(redis.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }) {
		t.Errorf("redis keeps /data (its append-only file) on no volume: %q", redis.Volumes)
	}
}

// checkComposeRelay validates one relay service's configuration with its
// secrets, and checks the service around it.
func checkComposeRelay(t *testing.T, name string, s composeService, configFile string, subnets []string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	files := mountedFiles{}
	for _, sec := range s.Secrets {
		// Compose mounts a secret at /run/secrets/<name>. The test key is
		// also a valid admin token (no blanks).
		files["/run/secrets/"+sec] = testSecret
	}
	cfg, err := validateRelayConfig(t, data, configFile, files, s.Environment)
	if err != nil {
		t.Errorf("service %s: %v", name, err)
		return config.Default()
	}
	if len(s.Command) < 1 || s.Command[0] != "serve" || flagValue(s.Command, "--config") != relayConfigIn {
		t.Errorf("service %s: command %q, want serve --config %s", name, s.Command, relayConfigIn)
	}
	grace := 30 * time.Second
	if g := flagValue(s.Command, "--grace"); g != "" {
		if grace, err = time.ParseDuration(g); err != nil {
			t.Errorf("service %s: --grace: %v", name, err)
		}
	}
	if stop, err := time.ParseDuration(s.StopGrace); err != nil || stop <= grace {
		t.Errorf("service %s: stop_grace_period %q, want more than --grace %s", name, s.StopGrace, grace)
	}
	if !s.ReadOnly || !slices.Contains(s.Tmpfs, "/tmp") || !slices.Contains(s.CapDrop, "ALL") {
		t.Errorf("service %s: want read_only, a tmpfs /tmp (the spool) and cap_drop ALL", name)
	}
	// Published ports reach the listeners.
	published := map[int]bool{}
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		if n, err := strconv.Atoi(parts[len(parts)-1]); err == nil {
			published[n] = true
		}
	}
	for _, addr := range []string{cfg.Listeners.Tenant.Listen, cfg.Admin.Listen} {
		if !published[portOf(addr)] {
			t.Errorf("service %s: %s is not published (ports %q)", name, addr, s.Ports)
		}
	}
	// The image's HEALTHCHECK asks the admin listener on loopback.
	if !strings.HasPrefix(cfg.Admin.Listen, "0.0.0.0:") && !strings.HasPrefix(cfg.Admin.Listen, "127.0.0.1:") || portOf(cfg.Admin.Listen) != 9025 {
		t.Errorf("service %s: admin.listen %s: the image's HEALTHCHECK asks 127.0.0.1:9025", name, cfg.Admin.Listen)
	}
	// allow_nets admits the compose network.
	for _, lg := range []config.Listener{cfg.Listeners.Tenant, cfg.Listeners.Return} {
		for _, sn := range subnets {
			if !slices.Contains(lg.AllowNets, sn) {
				t.Errorf("service %s: %s allow_nets %q lacks the compose network %s", name, lg.Listen, lg.AllowNets, sn)
			}
		}
	}
	return cfg
}

func vendorAddrs(c *config.Config) []string {
	var out []string
	for _, v := range c.Vendors {
		out = append(out, v.Address)
	}
	return out
}

// dockerInstruction is one instruction of a Dockerfile, continuation lines
// joined.
type dockerInstruction struct {
	line int
	cmd  string // upper case
	args string
}

func readDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	data, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the last instruction ends with a line continuation", dockerfilePath)
	}
	return out
}

var fromRe = regexp.MustCompile(`(?i)^(\S+)(?:\s+AS\s+(\S+))?$`)

// dockerfileStages returns the names of the Dockerfile's stages, in order.
func dockerfileStages(t *testing.T) []string {
	var stages []string
	for _, in := range readDockerfile(t) {
		if in.cmd == "FROM" {
			m := fromRe.FindStringSubmatch(in.args)
			if m == nil {
				t.Fatalf("%s:%d: FROM %s", dockerfilePath, in.line, in.args)
			}
			stages = append(stages, m[2])
		}
	}
	return stages
}

// TestDockerfile checks the Dockerfile against the repository: every file
// it copies from the build context exists (the context is the repository
// root), every COPY --from names an earlier stage, the Go packages it
// builds exist, the build is static, path-free and VCS-stamped, and the
// final image runs the relay as non-root with its ports exposed and a
// health check through the relay's own healthcheck command.
func TestDockerfile(t *testing.T) {
	const root = ".." // the build context: the repository root
	ins := readDockerfile(t)
	var stages []string
	stageOf := make([]int, len(ins)) // index of the stage each instruction is in
	for i, in := range ins {
		if in.cmd == "FROM" {
			m := fromRe.FindStringSubmatch(in.args)
			if m == nil {
				t.Fatalf("%s:%d: FROM %s", dockerfilePath, in.line, in.args)
			}
			stages = append(stages, m[2])
		}
		stageOf[i] = len(stages) - 1
	}
	if len(stages) < 2 || stages[len(stages)-1] != "recallrelay" {
		t.Fatalf("stages %q: want a multi-stage build whose last (default) stage is recallrelay", stages)
	}
	final := len(stages) - 1
	var finalFrom, user, entrypoint, health string
	var expose []string
	var built []string
	for i, in := range ins {
		fields := strings.Fields(in.args)
		switch in.cmd {
		case "FROM":
			if stageOf[i] == final {
				finalFrom = fields[0]
			}
		case "COPY", "ADD":
			var from string
			var srcs []string
			for _, f := range fields[:len(fields)-1] {
				switch {
				case strings.HasPrefix(f, "--from="):
					from = strings.TrimPrefix(f, "--from=")
				case strings.HasPrefix(f, "--"):
				default:
					srcs = append(srcs, f)
				}
			}
			if from != "" {
				if j := slices.Index(stages, from); j < 0 || j >= stageOf[i] {
					t.Errorf("%s:%d: COPY --from=%s: not an earlier stage", dockerfilePath, in.line, from)
				}
				continue
			}
			for _, src := range srcs {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s:%d: %s %s: %v", dockerfilePath, in.line, in.cmd, src, err)
				}
			}
		case "RUN":
			for _, m := range regexp.MustCompile(`go build [^&;]*?(\./cmd/\S+)`).FindAllStringSubmatch(in.args, -1) {
				built = append(built, m[1])
				if _, err := os.Stat(filepath.Join(root, m[1], "main.go")); err != nil {
					t.Errorf("%s:%d: builds %s: %v", dockerfilePath, in.line, m[1], err)
				}
				for _, flag := range []string{"-trimpath", "-buildvcs="} {
					if !strings.Contains(m[0], flag) {
						t.Errorf("%s:%d: go build of %s without %s", dockerfilePath, in.line, m[1], flag)
					}
				}
			}
		case "ENV":
			if strings.Contains(in.args, "CGO_ENABLED") && !strings.Contains(in.args, "CGO_ENABLED=0") {
				t.Errorf("%s:%d: %s", dockerfilePath, in.line, in.args)
			}
		case "USER":
			if stageOf[i] == final {
				user = in.args
			}
		case "EXPOSE":
			if stageOf[i] == final {
				expose = append(expose, fields...)
			}
		case "ENTRYPOINT":
			if stageOf[i] == final {
				entrypoint = in.args
			}
		case "HEALTHCHECK":
			if stageOf[i] == final {
				health = in.args
			}
		}
	}
	if !slices.Contains(built, "./cmd/recallrelay") || !slices.Contains(built, "./cmd/fakemta") {
		t.Errorf("go build of %q, want ./cmd/recallrelay and ./cmd/fakemta", built)
	}
	if !slices.ContainsFunc(ins, func(in dockerInstruction) bool { return in.cmd == "ENV" && strings.Contains(in.args, "CGO_ENABLED=0") }) {
		t.Errorf("no ENV CGO_ENABLED=0: the binaries must be static for a distroless/scratch image")
	}
	if !strings.HasPrefix(finalFrom, "gcr.io/distroless/static") && finalFrom != "scratch" {
		t.Errorf("final image FROM %s, want distroless static or scratch", finalFrom)
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root:") {
		t.Errorf("final image USER %q, want a non-root user", user)
	}
	for _, p := range []string{"2525", "2526", "9025"} {
		if !slices.Contains(expose, p) {
			t.Errorf("EXPOSE %q lacks %s", expose, p)
		}
	}
	if !strings.Contains(entrypoint, `"/usr/local/bin/recallrelay"`) {
		t.Errorf("ENTRYPOINT %s, want /usr/local/bin/recallrelay", entrypoint)
	}
	if !strings.Contains(health, `CMD ["/usr/local/bin/recallrelay", "healthcheck"`) || !strings.Contains(health, "/healthz") {
		t.Errorf("HEALTHCHECK %s, want the relay's healthcheck command on /healthz", health)
	}

	// The ignore file beside the Dockerfile keeps what the build needs.
	ignore, err := os.ReadFile(dockerfilePath + ".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		p := strings.TrimPrefix(strings.TrimSpace(line), "/")
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		for _, needed := range []string{".git", "go.mod", "go.sum", "cmd", "*"} {
			if p == needed || strings.HasPrefix(p, needed+"/") {
				t.Errorf("%s.dockerignore excludes %s, which the build needs", dockerfilePath, p)
			}
		}
	}
}
