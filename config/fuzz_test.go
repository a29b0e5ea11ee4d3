package config

import (
	"errors"
	"path/filepath"
	"testing"
)

// FuzzParseTargetPattern: any string either fails to parse or parses to a
// pattern whose canonical form parses back to the same pattern, whose
// port range is in order, and which matches no port outside it.
func FuzzParseTargetPattern(f *testing.F) {
	for _, s := range []string{"*:*", "db.corp:5432", "*.web.corp:80-443", "10.0.0.0/8:22", "[fd00::/8]:*",
		"192.168.1.5:22", "[::ffff:10.0.0.1]:1", "*.0.1:80", "a:65535-1", "[fe80::1%eth0]:22", "x.:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseTargetPattern(s)
		if err != nil {
			return
		}
		canon := p.String()
		q, err := ParseTargetPattern(canon)
		if err != nil {
			t.Fatalf("%q parsed, but its canonical form %q does not: %v", s, canon, err)
		}
		if q != p || q.String() != canon {
			t.Fatalf("%q: canonical %q parses to %+v (%q), want %+v", s, canon, q, q.String(), p)
		}
		if p.lo > p.hi || p.host == hostNone {
			t.Fatalf("%q: parsed to an empty pattern %+v", s, p)
		}
		if p.lo > 0 && p.Match("x.example", p.prefix.Addr(), p.lo-1) || p.hi < 65535 && p.Match("x.example", p.prefix.Addr(), p.hi+1) {
			t.Fatalf("%q matches a port outside %d-%d", s, p.lo, p.hi)
		}
	})
}

// FuzzParse loads arbitrary bytes as a daemon and as a server config: each
// either loads, with every default filled in, or fails with Errors, each
// naming the file. It must never panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validDoc))
	f.Add([]byte("listen = \"0.0.0.0:7777\"\ntoken = \"x\"\nrelay = false\n"))
	f.Add([]byte("[rendezvous]\ntoken_file = \"/dev/zero\"\n"))
	f.Add([]byte("[[peers]]\nname = 1\n[link]\nkeepalive = \"-1s\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.toml"
		c, err := Parse(name, data)
		checkLoaded(t, name, err, c != nil)
		if err == nil && (!filepath.IsAbs(c.KeyFile) || c.Link.Relay == nil || c.Link.KeepAlive.Duration <= 0) {
			t.Fatalf("loaded with defaults missing: %+v", c)
		}
		s, err := ParseServer(name, data)
		checkLoaded(t, name, err, s != nil)
		if err == nil && (s.Relay == nil || s.Limits == nil || s.Listen == "") {
			t.Fatalf("server config loaded with defaults missing: %+v", s)
		}
	})
}

// checkLoaded checks Parse's contract: a config or Errors naming name.
func checkLoaded(t *testing.T, name string, err error, loaded bool) {
	t.Helper()
	if err == nil {
		if !loaded {
			t.Fatal("no config and no error")
		}
		return
	}
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
	}
	for _, e := range errs {
		if e.File != name || e.Error() == "" {
			t.Fatalf("error %q names file %q, want %q", e, e.File, name)
		}
	}
}
