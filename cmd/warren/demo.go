package main

import (
	"context"
	"io"

	"github.com/warren-p2p/warren/demo"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	once := fs.Bool("once", false, "exit after the checks (non-zero if one fails)")
	level := fs.String("log-level", "warn", "log `LEVEL` of the demo's components")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *level, "text")
	if err != nil {
		return err
	}
	return demo.Run(ctx, demo.Options{Once: *once, Out: stdout, Log: log})
}
