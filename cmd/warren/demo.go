package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/warren-p2p/warren/demo"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	once := fs.Bool("once", false, "exit after the checks (non-zero if one fails)")
	// The demo's narrative says what happens, planned refusals included;
	// warnings about those would only confuse.
	level := fs.String("log-level", "error", "log `LEVEL` of the demo's components (info shows what the daemons log)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *level, "text")
	if err != nil {
		return err
	}
	return demo.Run(ctx, demo.Options{Once: *once, Out: stdout, Log: log, Command: selfCommand()})
}

// selfCommand is how the user can run this warren again: "warren" when
// that is what PATH finds, "go run ./cmd/warren" under go run (whose
// binary is gone when it exits), else the binary's path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "warren"
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/warren"
	}
	if onPath, err := exec.LookPath("warren"); err == nil {
		if a, b := fileID(onPath), fileID(exe); a != nil && b != nil && os.SameFile(a, b) {
			return "warren"
		}
	}
	return exe
}

func fileID(path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fi
}
