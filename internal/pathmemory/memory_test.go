package pathmemory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func key(peer string) Key {
	return Key{Peer: peer, Self: "198.51.100.7 cone", PeerNet: "203.0.113.9 symrand"}
}

func newMemory(t *testing.T, cfg Config) *Memory {
	t.Helper()
	if cfg.File == "" {
		cfg.File = filepath.Join(t.TempDir(), "paths.json")
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRoundTrip: what one run puts, the next run's Load gets back, until
// it expires.
func TestRoundTrip(t *testing.T) {
	m := newMemory(t, Config{TTL: time.Hour})
	e := Entry{Path: "relay", Strategy: "tcp:connect udp:spray", Setup: 3200 * time.Millisecond, At: t0}
	if err := m.Put(key("a"), e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(m.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600 (it names peers' addresses)", fi.Mode().Perm())
	}
	tests := []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"fresh", t0.Add(time.Minute), true},
		{"just before expiry", t0.Add(time.Hour - time.Second), true},
		{"expired", t0.Add(time.Hour), false},
		{"clock far behind the entry", t0.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := newMemory(t, m.cfg)
			if err := next.Load(tt.now); err != nil {
				t.Fatal(err)
			}
			got, ok := next.Get(key("a"), tt.now)
			if ok != tt.ok || (ok && got != e) {
				t.Errorf("Get = %+v, %v; want %+v, %v", got, ok, e, tt.ok)
			}
			if _, ok := next.Get(Key{Peer: "a", Self: "another network"}, tt.now); ok {
				t.Error("an entry for another network was returned")
			}
		})
	}
}

// TestTrim: beyond MaxEntries the oldest entries go, in memory and in
// the file.
func TestTrim(t *testing.T) {
	m := newMemory(t, Config{MaxEntries: 3})
	for i, peer := range []string{"a", "b", "c", "d", "e"} {
		if err := m.Put(key(peer), Entry{Path: "direct-tcp", At: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	next := newMemory(t, m.cfg)
	if err := next.Load(t0); err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"a", "b", "c", "d", "e"} {
		_, ok := next.Get(key(peer), t0.Add(time.Minute))
		if want := peer >= "c"; ok != want {
			t.Errorf("peer %s kept %v, want %v", peer, ok, want)
		}
	}
}

// TestBadFile: a file that is not the memory's is reported, leaves the
// memory empty, and is replaced by the next Put.
func TestBadFile(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"garbage", "\x00\x01not json", "invalid character"},
		{"truncated", `{"version":1,"entries":[{"peer":"a"`, "unexpected end"},
		{"other version", `{"version":7,"entries":[]}`, "version 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "paths.json")
			if err := os.WriteFile(file, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			m := newMemory(t, Config{File: file})
			err := m.Load(t0)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), file) {
				t.Fatalf("Load: %v; want an error naming %s and saying %q", err, file, tt.want)
			}
			if err := m.Put(key("a"), Entry{Path: "relay", At: t0}); err != nil {
				t.Fatal(err)
			}
			next := newMemory(t, Config{File: file})
			if err := next.Load(t0); err != nil {
				t.Fatalf("the replaced file: %v", err)
			}
			if _, ok := next.Get(key("a"), t0); !ok {
				t.Error("the replacing entry is missing")
			}
		})
	}
}

// TestUnwritable: a state directory that cannot be written to fails the
// write, not the memory: this run still remembers.
func TestUnwritable(t *testing.T) {
	m := newMemory(t, Config{File: filepath.Join(t.TempDir(), "missing", "paths.json")})
	if err := m.Load(t0); err != nil {
		t.Fatalf("a missing file is an empty memory: %v", err)
	}
	if err := m.Put(key("a"), Entry{Path: "relay", At: t0}); err == nil {
		t.Fatal("Put into a missing directory succeeded")
	}
	if _, ok := m.Get(key("a"), t0); !ok {
		t.Error("the entry was lost with the write")
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{{}, {File: "x", TTL: -1}, {File: "x", MaxEntries: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
