package main

import (
	"io"

	"github.com/sirupsen/logrus"
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
	l.SetLevel(lv)
	// Milliseconds: a punch takes tens of them, and logs from two
	// machines are read side by side.
	const stamp = "2006-01-02T15:04:05.000Z07:00"
	if format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: stamp})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: stamp})
	}
	return l, nil
}
