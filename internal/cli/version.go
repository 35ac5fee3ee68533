package cli

import "runtime/debug"

// Revision is the VCS revision the binaries were built from, for builds in
// which the go command cannot read it (the container build: .dockerignore
// leaves .git out). The Dockerfile sets it from its VCS_REVISION build
// argument:
//
//	go build -ldflags "-X github.com/edupulse/pulsebus/internal/cli.Revision=$(git rev-parse HEAD)"
var Revision string

// Version describes the build for the start-up log: the module version,
// then the first 12 characters of the VCS revision and "+dirty" for a
// modified tree, from the build information or else from [Revision].
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	revision, dirty := Revision, false
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && s.Value != "":
			revision = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = true
		}
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if revision != "" {
		v += " " + revision
	}
	if dirty {
		v += "+dirty"
	}
	return v
}
