package transport

import (
	"testing"
	"time"
)

func TestChooseStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    PathQuality
		want StreamKind
	}{
		{"lan, no loss", PathQuality{RTT: 300 * time.Microsecond}, StreamQUIC},
		{"long path, no loss", PathQuality{RTT: 200 * time.Millisecond}, StreamQUIC},
		{"lan, rare loss", PathQuality{RTT: time.Millisecond, LossPercent: 0.01}, StreamQUIC},
		{"broadband", PathQuality{RTT: 30 * time.Millisecond, LossPercent: 0.1}, StreamKCP},
		{"mobile", PathQuality{RTT: 90 * time.Millisecond, LossPercent: 2}, StreamKCP},
		{"bad wifi", PathQuality{RTT: 20 * time.Millisecond, LossPercent: 5}, StreamKCP},
		{"intercontinental", PathQuality{RTT: 200 * time.Millisecond, LossPercent: 0.5}, StreamKCP},
		{"unmeasured rtt, loss", PathQuality{LossPercent: 3}, StreamKCP},
		{"loss over 100%", PathQuality{RTT: 50 * time.Millisecond, LossPercent: 400}, StreamKCP},
	} {
		if got := ChooseStream(tc.q); got != tc.want {
			t.Errorf("%s (%+v): %s, want %s", tc.name, tc.q, got, tc.want)
		}
	}
}

// TestEstimateQuality: what natlab's profiles look like to a train of 48
// probes, and the stream they then get.
func TestEstimateQuality(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sent, lost int
		rtt        time.Duration
		want       StreamKind
	}{
		{"lan", 48, 0, 200 * time.Microsecond, StreamQUIC},
		{"lan on a loaded machine", 48, 0, 700 * time.Microsecond, StreamQUIC},
		{"Wi-Fi lan", 48, 0, 1500 * time.Microsecond, StreamQUIC},
		{"same city", 48, 0, 3 * time.Millisecond, StreamKCP},
		{"lan losing a probe", 48, 1, 200 * time.Microsecond, StreamQUIC},
		{"lan losing a tenth", 48, 5, 500 * time.Microsecond, StreamKCP},
		{"broadband, no probe lost", 48, 0, 30 * time.Millisecond, StreamKCP},
		{"mobile, a run of luck", 48, 0, 75 * time.Millisecond, StreamKCP},
		{"mobile", 48, 3, 75 * time.Millisecond, StreamKCP},
		{"bad-wifi", 48, 5, 20 * time.Millisecond, StreamKCP},
	} {
		q := EstimateQuality(tc.sent, tc.lost, tc.rtt)
		if q.LossPercent < LossFloorPercent || q.RTT != tc.rtt {
			t.Errorf("%s: %+v", tc.name, q)
		}
		if got := ChooseStream(q); got != tc.want {
			t.Errorf("%s (%+v): %s, want %s", tc.name, q, got, tc.want)
		}
	}
	if q := EstimateQuality(10, 5, time.Millisecond); q.LossPercent != 50 {
		t.Errorf("5 of 10 lost: %v%%", q.LossPercent)
	}
}
