package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	example := filepath.Join("..", "..", "deploy", "recallrelay.example.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listeners:\n  tenant:\n    listen: 127.0.0.1:2525\n    max_mesage_size: 1MB\n"), 0o600)

	tests := []struct {
		name     string
		args     []string
		env      string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"example with key from env", []string{"check", "--config", example}, "base64:" + strings.Repeat("QUFB", 11), 0, "valid", ""},
		{"example without key", []string{"check", "--config", example}, "", 1, "", "reference.keys[0].secret_env: environment variable RECALLRELAY_REF_SECRET_K1 is not set"},
		{"unknown key with line", []string{"check", "--config", bad}, "", 1, "", "listeners.tenant.max_mesage_size"},
		{"missing file", []string{"check", "--config", "/nonexistent.yaml"}, "", 1, "", "no such file"},
		{"missing flag", []string{"check"}, "", 2, "", "--config FILE is required"},
		{"unknown command", []string{"frobnicate"}, "", 2, "", `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("RECALLRELAY_REF_SECRET_K1", tt.env)
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errb.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, out.String())
			}
			if !strings.Contains(errb.String(), tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, errb.String())
			}
			if tt.env != "" && strings.Contains(out.String()+errb.String(), tt.env) {
				t.Error("the key secret was printed")
			}
		})
	}
}

// The demo is the README's first command: it must run the whole loop on the
// built-in defaults and report every message intact.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"demo"}, &out, &errb); code != 0 {
		t.Fatalf("demo exited %d:\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "12 messages, 12 delivered intact") {
		t.Errorf("demo output:\n%s", out.String())
	}
	// A vendor that does nothing leaves nothing to restore, and the demo
	// says so rather than claiming repairs.
	out.Reset()
	if code := run([]string{"demo", "--behaviors", "passthrough"}, &out, &errb); code != 0 {
		t.Fatalf("passthrough demo exited %d:\n%s", code, errb.String())
	}
	if !strings.Contains(out.String(), "0 fields restored") {
		t.Errorf("passthrough demo output:\n%s", out.String())
	}
	if code := run([]string{"demo", "--behaviors", "no-such-behaviour"}, &out, &errb); code != 2 {
		t.Errorf("unknown behaviour: exit %d", code)
	}
}
