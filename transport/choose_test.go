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
