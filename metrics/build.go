package metrics

import "runtime/debug"

// BuildVersion returns the running binary's module version and VCS
// revision, as the Go toolchain recorded them: "devel" for a version
// built from a working tree, "unknown" for a revision it did not record
// (go run, -buildvcs=false), with "-dirty" appended when the tree had
// uncommitted changes.
func BuildVersion() (version, revision string) {
	version, revision = "devel", "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, revision
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				revision = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && revision != "unknown" {
		revision += "-dirty"
	}
	return version, revision
}
