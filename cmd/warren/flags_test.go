package main

import (
	"errors"
	"io"
	"runtime/debug"
	"slices"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		operands []string
		c        int
		admin    string
		err      error
	}{
		{args: nil, c: 4, admin: "a"},
		{args: []string{"home"}, operands: []string{"home"}, c: 4, admin: "a"},
		{args: []string{"home", "-c", "2"}, operands: []string{"home"}, c: 2, admin: "a"},
		{args: []string{"-c", "2", "home", "-admin", "b", "x"}, operands: []string{"home", "x"}, c: 2, admin: "b"},
		{args: []string{"-c", "2", "--", "-admin", "b"}, operands: []string{"-admin", "b"}, c: 2, admin: "a"},
		{args: []string{"home", "-h"}, err: errHelp},
		{args: []string{"home", "-nope"}, err: usageError{}},
	} {
		fs := newFlags("ping", io.Discard)
		c := fs.Int("c", 4, "")
		admin := fs.String("admin", "a", "")
		operands, err := parseArgs(fs, tc.args)
		switch {
		case tc.err == errHelp && !errors.Is(err, errHelp),
			tc.err != nil && tc.err != errHelp && !errors.As(err, new(usageError)),
			tc.err == nil && err != nil:
			t.Errorf("%q: error %v, want %T %v", tc.args, err, tc.err, tc.err)
		case tc.err == nil && (!slices.Equal(operands, tc.operands) || *c != tc.c || *admin != tc.admin):
			t.Errorf("%q: operands %q c=%d admin=%q, want %q %d %q", tc.args, operands, *c, *admin, tc.operands, tc.c, tc.admin)
		}
	}
}

func TestVersionLine(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for _, tc := range []struct {
		version string
		bi      *debug.BuildInfo
		want    string
	}{
		{"dev", nil, "warren dev"},
		{"dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "warren dev go1.26.8"},
		{"dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}}, "warren v1.2.0 go1.26.8"},
		{"v1.3.0", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}}, "warren v1.3.0 go1.26.8"},
		{"dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs.revision", "5292981abcdef0123456789", "vcs.time", "2026-12-07T13:44:00Z", "vcs.modified", "true")},
			"warren dev commit 5292981abcde (2026-12-07T13:44:00Z) modified go1.26.8"},
		{"dev", &debug.BuildInfo{GoVersion: "go1.26.8", Settings: vcs("vcs.revision", "abc", "vcs.modified", "false")},
			"warren dev commit abc go1.26.8"},
	} {
		if got := versionLine(tc.version, tc.bi); got != tc.want {
			t.Errorf("versionLine(%q, %+v) = %q, want %q", tc.version, tc.bi, got, tc.want)
		}
	}
}
