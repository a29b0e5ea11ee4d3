package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestProgressFormatter(t *testing.T) {
	at := time.Date(2026, 12, 7, 15, 4, 5, 6e6, time.UTC)
	entry := func(lv logrus.Level, msg string, f logrus.Fields) *logrus.Entry {
		return &logrus.Entry{Time: at, Level: lv, Message: msg, Data: f}
	}
	for _, tc := range []struct {
		verbose bool
		e       *logrus.Entry
		want    string // "" for a line not shown
	}{
		{false, entry(logrus.InfoLevel, "link up", logrus.Fields{"peer": "home", "path": "direct-tcp", "setup": "42ms"}),
			"15:04:05.006  link up [home]                                 path=direct-tcp setup=42ms\n"},
		{false, entry(logrus.DebugLevel, "punching", logrus.Fields{"peer": "home", "strategy": "easy/easy", "lan": "[1.2.3.4:5 6.7.8.9:10]"}),
			"15:04:05.006  punching [home]                                lan=\"[1.2.3.4:5 6.7.8.9:10]\" strategy=easy/easy\n"},
		{false, entry(logrus.DebugLevel, "bad stream request", logrus.Fields{"peer": "home"}), ""},
		{true, entry(logrus.DebugLevel, "bad stream request", nil), "15:04:05.006  bad stream request\n"},
		{false, entry(logrus.WarnLevel, "cannot reach peer", logrus.Fields{"component": "forward", "mapping": ""}),
			"15:04:05.006  warning cannot reach peer\n"},
		{false, entry(logrus.ErrorLevel, "reload failed", nil), "15:04:05.006  ERROR reload failed\n"},
	} {
		b, err := (&progressFormatter{verbose: tc.verbose}).Format(tc.e)
		// Alignment aside, the words and their order.
		if err != nil || strings.Join(strings.Fields(string(b)), " ") != strings.Join(strings.Fields(tc.want), " ") ||
			(tc.want != "" && !strings.HasSuffix(string(b), "\n")) {
			t.Errorf("%q (verbose %v): %q, %v; want %q", tc.e.Message, tc.verbose, b, err, tc.want)
		}
	}
}

// TestSetLevelKeepsProgress: at a terminal the logger passes debug lines
// to the formatter (which keeps only the punching steps) whatever level the
// config or a reload sets; elsewhere the level is the config's.
func TestSetLevelKeepsProgress(t *testing.T) {
	l := logrus.New()
	l.SetFormatter(&progressFormatter{})
	setLevel(l, logrus.InfoLevel)
	if l.GetLevel() != logrus.DebugLevel || l.Formatter.(*progressFormatter).verbose {
		t.Errorf("terminal at info: level %v, verbose %v; want debug, false", l.GetLevel(), l.Formatter.(*progressFormatter).verbose)
	}
	setLevel(l, logrus.TraceLevel)
	if l.GetLevel() != logrus.TraceLevel || !l.Formatter.(*progressFormatter).verbose {
		t.Errorf("terminal at trace: level %v, verbose %v", l.GetLevel(), l.Formatter.(*progressFormatter).verbose)
	}
	plain, err := newLogger(&strings.Builder{}, "info", "text")
	if err != nil || plain.GetLevel() != logrus.InfoLevel {
		t.Errorf("not a terminal: level %v, %v; want info", plain.GetLevel(), err)
	}
	if _, ok := plain.Formatter.(*logrus.TextFormatter); !ok {
		t.Errorf("not a terminal: formatter %T, want the plain text one", plain.Formatter)
	}
}
