package daemon

import (
	"slices"
	"testing"
	"time"
)

func TestRateHistory(t *testing.T) {
	var h rateHistory
	step := func(in, out int64) { h.add([]PeerStatus{{Name: "home", BytesIn: in, BytesOut: out}}, time.Second) }
	if h.get("home") != nil {
		t.Fatal("history before any sample")
	}
	step(1000, 0)          // first sight: the counters so far are no rate
	step(2000, 500)        // +1000 B in, +500 B out in 1 s
	step(300, 500)         // a new link: its 300 bytes came in this interval
	for range historyLen { // the oldest fall off
		step(300, 500)
	}
	got := h.get("home")
	if len(got.InBps) != historyLen || got.IntervalS != historyInterval.Seconds() {
		t.Fatalf("history of %d samples at %vs, want %d at %vs", len(got.InBps), got.IntervalS, historyLen, historyInterval.Seconds())
	}
	h = rateHistory{}
	step(1000, 0)
	step(2000, 500)
	step(300, 500)
	if got := h.get("home"); !slices.Equal(got.InBps, []int64{0, 8000, 2400}) || !slices.Equal(got.OutBps, []int64{0, 4000, 0}) {
		t.Fatalf("in %v out %v, want [0 8000 2400] [0 4000 0]", got.InBps, got.OutBps)
	}
	h.add(nil, time.Second)
	if h.get("home") != nil {
		t.Fatal("a peer no longer configured keeps its history")
	}
}
