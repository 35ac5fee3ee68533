package cli

import (
	"runtime/debug"
	"strings"
)

// release is the version a release build stamps in with
// -ldflags "-X github.com/edupulse/pulsebus/internal/cli.release=v1.2.3"
// (make build does). Empty in other builds.
var release string

// Revision is the VCS revision the binaries were built from, for builds in
// which the go command cannot read it (the container build: .dockerignore
// leaves .git out). The Dockerfile sets it from its VCS_REVISION build
// argument:
//
//	go build -ldflags "-X github.com/edupulse/pulsebus/internal/cli.Revision=$(git rev-parse HEAD)"
var Revision string

// Version describes the build: the release (or the module version, "(devel)"
// for a build from a checkout), then the VCS revision (from the build
// information, else [Revision]) and commit time when known, "+dirty" for
// uncommitted changes, and the Go version:
// "v1.2.3 (rev 1fa12b3c0a4e, 2026-12-04T23:02:11Z, go1.27.3)".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return orDevel(release) + " (no build information)"
	}
	v := release
	if v == "" {
		v = bi.Main.Version
	}
	rev, at, dirty := Revision, "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				rev = s.Value
			}
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	var details []string
	if rev != "" {
		details = append(details, "rev "+rev[:min(12, len(rev))]+dirty)
	}
	if at != "" {
		details = append(details, at)
	}
	details = append(details, bi.GoVersion)
	return orDevel(v) + " (" + strings.Join(details, ", ") + ")"
}

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}
