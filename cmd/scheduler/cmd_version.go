package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func versionCmd(_ context.Context, s *stdio, args []string) error {
	f := newFlagSet("version", "Print the version of this binary and the Go version it was built with.")
	if err := f.parse(args, s.lookupEnv); err != nil {
		return err
	}
	info, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprintf(s.out, "scheduler %s (%s)\n", versionString(version, info), runtime.Version())
	return err
}

// versionString is the version set at build time, else the module version
// `go install` records, else the VCS revision a build from a checkout
// records, else devel.
func versionString(set string, info *debug.BuildInfo) string {
	if set != "" {
		return set
	}
	if info == nil {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return rev
}
