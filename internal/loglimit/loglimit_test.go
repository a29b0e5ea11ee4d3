package loglimit

import (
	"fmt"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func newTest(t *testing.T, cfg Config) (*Limiter, *test.Hook) {
	t.Helper()
	log, hook := test.NewNullLogger()
	cfg.Log = log
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, hook
}

// TestFloodBecomesOneSummary: 10,000 lines of one kind from one source in
// an interval let Burst through and end as one summary line that counts
// the rest; another source and another kind keep their own bursts.
func TestFloodBecomesOneSummary(t *testing.T) {
	l, hook := newTest(t, Config{Interval: time.Minute, Burst: 3})
	t0 := time.Unix(1000, 0)
	key := Key{Source: "192.0.2.1", Kind: "nat"}
	passed := 0
	for i := range 10000 {
		if l.AllowAt(t0.Add(time.Duration(i)*time.Millisecond), key) {
			passed++
		}
	}
	if passed != 3 {
		t.Errorf("%d lines passed, want the burst of 3", passed)
	}
	for _, k := range []Key{{"192.0.2.2", "nat"}, {"192.0.2.1", "relay"}} {
		if !l.AllowAt(t0, k) {
			t.Errorf("%v was held back by another key's flood", k)
		}
	}
	l.Flush(t0.Add(30 * time.Second))
	if n := len(hook.AllEntries()); n != 0 {
		t.Fatalf("%d summaries before the interval ended", n)
	}
	l.Flush(t0.Add(time.Minute))
	entries := hook.AllEntries()
	if len(entries) != 1 {
		t.Fatalf("%d summary lines, want 1: %v", len(entries), entries)
	}
	if e := entries[0]; e.Data["suppressed"] != 9997 || e.Data["source"] != "192.0.2.1" || e.Data["kind"] != "nat" {
		t.Errorf("summary %v", e.Data)
	}
	// A new interval has a new burst.
	if !l.AllowAt(t0.Add(time.Minute+time.Second), key) {
		t.Error("the next interval let nothing through")
	}
}

// TestAllowRollsOver: without Flush, the first line of a new interval
// logs the last interval's summary.
func TestAllowRollsOver(t *testing.T) {
	l, hook := newTest(t, Config{Interval: time.Second, Burst: 1})
	t0 := time.Unix(1000, 0)
	key := Key{Source: "s", Kind: "k"}
	l.AllowAt(t0, key)
	l.AllowAt(t0, key)
	l.AllowAt(t0, key)
	if !l.AllowAt(t0.Add(2*time.Second), key) {
		t.Fatal("the next interval's first line was held back")
	}
	if e := hook.LastEntry(); e == nil || e.Data["suppressed"] != 2 || e.Level != logrus.WarnLevel {
		t.Fatalf("summary %v", e)
	}
}

// TestMaxKeys: sources past MaxKeys share one key, so the limiter's size
// stays bounded and their lines are still limited.
func TestMaxKeys(t *testing.T) {
	l, hook := newTest(t, Config{Interval: time.Minute, Burst: 2, MaxKeys: 10})
	t0 := time.Unix(1000, 0)
	passed := 0
	for i := range 1000 {
		if l.AllowAt(t0, Key{Source: fmt.Sprint(i), Kind: "k"}) {
			passed++
		}
	}
	if passed != 10+2 {
		t.Errorf("%d lines passed, want 10 sources' first lines and the others' burst of 2", passed)
	}
	if n := len(l.keys); n > 11 {
		t.Errorf("%d keys held, want at most 11", n)
	}
	l.Flush(t0.Add(time.Minute))
	if e := hook.LastEntry(); e == nil || e.Data["source"] != Others || e.Data["suppressed"] != 1000-12 {
		t.Fatalf("summary %v", e)
	}
	if len(l.keys) != 0 {
		t.Errorf("%d keys after their interval", len(l.keys))
	}
}

func TestNewNeedsALog(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted a config without a log")
	}
}
