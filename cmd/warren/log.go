package main

import (
	"io"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"
)

// newLogger returns a logger at level ("" = info) in format "text" or "json".
func newLogger(w io.Writer, level, format string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(w)
	if level == "" {
		level = "info"
	}
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, usagef("log level: %v", err)
	}
	// Milliseconds: a punch takes tens of them, and logs from two
	// machines are read side by side.
	const stamp = "2006-01-02T15:04:05.000Z07:00"
	switch {
	case format == "json":
		l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: stamp})
	case isTerminal(w):
		// The punching steps are debug lines: let them through to the
		// formatter, which shows those and drops the rest below lv.
		l.SetFormatter(&progressFormatter{color: true})
	default:
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: stamp})
	}
	setLevel(l, lv)
	return l, nil
}

// isTerminal reports whether w is a terminal (a person watching), not a
// file, a pipe, /dev/null or journald.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// setLevel sets l's level to lv, keeping the punching steps visible at a
// terminal (see newLogger).
func setLevel(l *logrus.Logger, lv logrus.Level) {
	if pf, ok := l.Formatter.(*progressFormatter); ok {
		pf.verbose = lv >= logrus.DebugLevel
		lv = max(lv, logrus.DebugLevel)
	}
	l.SetLevel(lv)
}
