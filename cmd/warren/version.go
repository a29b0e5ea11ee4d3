package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=..."; without
// it the module version from the build info is used, if there is one.
var version = "dev"

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlags("version", stderr), args); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionLine(version, bi))
	return nil
}

// versionLine says which warren this is: its version, the commit it was
// built from (with "modified" when the work tree had uncommitted changes)
// and the Go that built it, so a bug report names the exact code.
func versionLine(v string, bi *debug.BuildInfo) string {
	if bi == nil {
		return "warren " + v
	}
	if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	var rev, when string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	line := "warren " + v
	if rev != "" {
		line += " commit " + rev[:min(12, len(rev))]
		if when != "" {
			line += " (" + when + ")"
		}
		if modified {
			line += " modified"
		}
	}
	return line + " " + bi.GoVersion
}
