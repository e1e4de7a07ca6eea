package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestReadVersion(t *testing.T) {
	here := runtime.GOOS + "/" + runtime.GOARCH
	info := func(version string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/recallrelay/recallrelay", Version: version}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	tests := []struct {
		name string
		read func() (*debug.BuildInfo, bool)
		want buildVersion
		str  string
	}{
		{"no build info", func() (*debug.BuildInfo, bool) { return nil, false },
			buildVersion{"(devel)", "unknown", false, runtime.Version(), here},
			"recallrelay (devel) revision unknown " + runtime.Version() + " " + here},
		{"work tree, clean", info("(devel)", "vcs", "git", "vcs.revision", "73f6303c", "vcs.modified", "false", "GOOS", "linux", "GOARCH", "arm64"),
			buildVersion{"(devel)", "73f6303c", false, "go1.99.1", "linux/arm64"},
			"recallrelay (devel) revision 73f6303c go1.99.1 linux/arm64"},
		{"work tree, modified", info("(devel)", "vcs.revision", "73f6303c", "vcs.modified", "true"),
			buildVersion{"(devel)", "73f6303c", true, "go1.99.1", here},
			"recallrelay (devel) revision 73f6303c (modified) go1.99.1 " + here},
		{"go install of a tag", info("v1.2.0"),
			buildVersion{"v1.2.0", "unknown", false, "go1.99.1", here},
			"recallrelay v1.2.0 revision unknown go1.99.1 " + here},
		{"empty version and revision", info("", "vcs.revision", ""),
			buildVersion{"(devel)", "unknown", false, "go1.99.1", here},
			"recallrelay (devel) revision unknown go1.99.1 " + here},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readVersion(tt.read)
			if got != tt.want {
				t.Errorf("readVersion = %+v, want %+v", got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	want := currentVersion().String() + "\n"
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{[]string{"version"}, 0, want, ""},
		{[]string{"--version"}, 0, want, ""},
		{[]string{"version", "extra"}, 2, "", `recallrelay version: unexpected argument "extra"`},
		{[]string{"version", "--json"}, 2, "", "flag provided but not defined: -json"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != tt.wantCode || out.String() != tt.wantOut || !strings.Contains(errb.String(), tt.wantErr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out.String(), errb.String(), tt.wantCode, tt.wantOut, tt.wantErr)
		}
	}
	if !strings.HasPrefix(want, "recallrelay ") || !strings.Contains(want, " revision ") || !strings.Contains(want, runtime.Version()) {
		t.Errorf("version line %q", want)
	}
}

// TestVersionLogFields checks the fields the serving log line gets.
func TestVersionLogFields(t *testing.T) {
	var buf bytes.Buffer
	v := buildVersion{Module: "v1.2.0", Revision: "73f6303c", Modified: true, Go: "go1.99.1", Platform: "linux/amd64"}
	log := zerolog.New(&buf)
	log.Info().Str("config", "c.yaml").EmbedObject(v).Msg("serving")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	want := map[string]any{"version": "v1.2.0", "revision": "73f6303c", "modified": true, "go": "go1.99.1", "config": "c.yaml", "message": "serving"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("field %s = %v, want %v (line %s)", k, got[k], w, buf.String())
		}
	}
}
