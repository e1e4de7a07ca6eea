package yamlconf

import "testing"

// FuzzByteSize checks that every size ParseByteSize accepts formats back to
// the same value.
func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"150MB", "1MiB", "64KiB", "10kB", "0", "-3", "7 gib"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, int64(b), b.String(), int64(back), err)
		}
	})
}
