package natlab

import (
	"math"
	"testing"
	"time"
)

func TestProfiles(t *testing.T) {
	want := map[string]struct {
		rtt     time.Duration
		loss    float64 // one-way path loss, percent
		rate    int64
		mtu     int
		dropped bool
	}{
		"lan":              {},
		"clean":            {},
		"broadband":        {rtt: 30 * time.Millisecond, loss: 0.1, rate: 100e6},
		"intercontinental": {rtt: 200 * time.Millisecond, loss: 0.5},
		"mobile":           {rtt: 90 * time.Millisecond, loss: 2, rate: 20e6, mtu: 1400},
		"bad-wifi":         {rtt: 20 * time.Millisecond, loss: 5},
		"blackhole-mtu":    {mtu: 1280, dropped: true},
	}
	if len(Profiles()) != len(want) {
		t.Fatalf("Profiles() = %v", Profiles())
	}
	for _, name := range Profiles() {
		p, err := LookupProfile(name)
		if err != nil || p.Verify() != nil || DescribeProfile(name) == "" {
			t.Fatalf("%s: %v, %v", name, err, p.Verify())
		}
		w := want[name]
		// Two sites with the profile: the round trip crosses four
		// uplink directions, a one-way path two.
		if rtt := 2 * (p.Up.Delay + p.Down.Delay); rtt != w.rtt {
			t.Errorf("%s: RTT %v, want %v", name, rtt, w.rtt)
		}
		hop := (p.Up.LossPercent + p.Up.Burst.LossPercent()) / 100
		if loss := 100 * (1 - (1-hop)*(1-hop)); math.Abs(loss-w.loss) > 1e-9 {
			t.Errorf("%s: path loss %v%%, want %v%%", name, loss, w.loss)
		}
		if p.Up.RateBitps != w.rate || p.MTU != w.mtu || p.DropICMP != w.dropped {
			t.Errorf("%s: rate %d, MTU %d, ICMP dropped %v", name, p.Up.RateBitps, p.MTU, p.DropICMP)
		}
		if p.Emulated() != (name != "lan") {
			t.Errorf("%s: Emulated() = %v", name, p.Emulated())
		}
	}
	m, _ := LookupProfile("mobile")
	if m.Up.Burst.BadLen != 3 || 4*m.Up.Jitter != 20*time.Millisecond {
		t.Errorf("mobile: loss runs %v, RTT jitter %v", m.Up.Burst.BadLen, 4*m.Up.Jitter)
	}
	if _, err := LookupProfile("dialup"); err == nil {
		t.Error("LookupProfile(dialup) succeeded")
	}
	if (Profile{}).Emulated() {
		t.Error("the zero Profile inserts an emulator")
	}
}

func TestProfilePaths(t *testing.T) {
	m, _ := LookupProfile("mobile")
	bb, _ := LookupProfile("broadband")
	if rtt := m.RoundTrip(m); rtt != 90*time.Millisecond {
		t.Errorf("mobile to mobile RTT %v, want 90ms", rtt)
	}
	if rtt := m.RoundTrip(bb); rtt != 60*time.Millisecond {
		t.Errorf("mobile to broadband RTT %v, want 60ms", rtt)
	}
	if rtt := bb.RoundTrip(Profile{}); rtt != 15*time.Millisecond {
		t.Errorf("broadband to the server RTT %v, want 15ms", rtt)
	}
	if c := m.Capacity(bb); c != 20e6 {
		t.Errorf("mobile to broadband capacity %d, want 20 Mbit/s", c)
	}
	if c := bb.Capacity(Profile{}); c != 100e6 {
		t.Errorf("broadband to the server capacity %d, want 100 Mbit/s", c)
	}
	if c := (Profile{}).Capacity(Profile{}); c != 0 {
		t.Errorf("lan capacity %d, want 0 (unlimited)", c)
	}
}

func TestProfileVerify(t *testing.T) {
	for _, p := range []Profile{
		{MTU: 500},
		{MTU: 9000},
		{Up: Path{Delay: -1}},
		{Down: Path{Jitter: -1}},
		{Up: Path{Delay: time.Minute, Jitter: time.Second}},
		{Up: Path{LossPercent: 101}},
		{Up: Path{LossPercent: math.NaN()}},
		{Up: Path{RateBitps: 100}},
		{Up: Path{QueueBytes: -1}},
		{Up: Path{Burst: Burst{GoodLen: 0.5, BadLen: 2, LossBad: 1}}},
		{Up: Path{Burst: Burst{GoodLen: 10, BadLen: 2, LossBad: 1.5}}},
	} {
		if p.Verify() == nil {
			t.Errorf("Verify(%+v) = nil, want an error", p)
		}
	}
}
