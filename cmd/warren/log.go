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
	if format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return l, nil
}
