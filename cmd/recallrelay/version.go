package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/rs/zerolog"
)

// buildVersion is what a binary knows about its own build, from the build
// information the Go toolchain embeds (runtime/debug.ReadBuildInfo).
type buildVersion struct {
	// Module is the version of the main module: a tag such as "v1.2.0"
	// or a pseudo-version for a binary installed with go install,
	// "(devel)" for one built in a work tree.
	Module string
	// Revision is the VCS revision the binary was built from, "unknown"
	// when the build did not record one (-buildvcs=false, no git, go run
	// of a file list, tests).
	Revision string
	// Modified reports whether the work tree had uncommitted changes when
	// the binary was built; false when unknown.
	Modified bool
	// Go is the version of the Go toolchain that built the binary.
	Go string
	// Platform is the target, GOOS/GOARCH.
	Platform string
}

// currentVersion returns the build version of the running binary.
func currentVersion() buildVersion { return readVersion(debug.ReadBuildInfo) }

// readVersion returns the build version that read, debug.ReadBuildInfo or
// a stand-in, reports, with "(devel)" and "unknown" for what it lacks and
// the running binary's Go version and platform when it has none.
func readVersion(read func() (*debug.BuildInfo, bool)) buildVersion {
	v := buildVersion{
		Module:   "(devel)",
		Revision: "unknown",
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	info, ok := read()
	if !ok || info == nil {
		return v
	}
	if info.Main.Version != "" {
		v.Module = info.Main.Version
	}
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	var goos, goarch string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				v.Revision = s.Value
			}
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		v.Platform = goos + "/" + goarch
	}
	return v
}

// String returns the version on one line, e.g.
// "recallrelay v1.2.0 revision 73f6303c… (modified) go1.26.8 linux/amd64".
func (v buildVersion) String() string {
	s := "recallrelay " + v.Module + " revision " + v.Revision
	if v.Modified {
		s += " (modified)"
	}
	return s + " " + v.Go + " " + v.Platform
}

// MarshalZerologObject adds the version to a log event as the fields
// version, revision, modified and go; with Event.EmbedObject they are
// top-level fields of the line.
func (v buildVersion) MarshalZerologObject(e *zerolog.Event) {
	e.Str("version", v.Module).Str("revision", v.Revision).Bool("modified", v.Modified).Str("go", v.Go)
}

// cmdVersion prints the build version of the binary.
func cmdVersion(args []string, stdout io.Writer) error {
	if err := parseFlags(newFlags("version"), args); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, currentVersion())
	return err
}
