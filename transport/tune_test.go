package transport

import (
	"testing"

	"github.com/warren-p2p/warren/internal/benchtest"
)

// BenchmarkKCPConfigs compares Config choices on loopback.
func BenchmarkKCPConfigs(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"default", Config{}},
		{"wnd512", Config{SendWindow: 512, RecvWindow: 512}},
		{"wnd2048", Config{SendWindow: 2048, RecvWindow: 2048}},
		{"wnd4096", Config{SendWindow: 4096, RecvWindow: 4096}},
		{"conservativeRTO", Config{ConservativeRTO: true}},
		{"mtu1450", Config{MTU: 1450}},
		{"cwnd", Config{CongestionWindow: true}},
		{"interval20", Config{Interval: 20e6}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			da, db := newDemux(b), newDemux(b)
			cfg := tc.cfg
			ca, cb := dialPair(b, da, db, 42, &cfg)
			benchtest.Stream(b, ca, cb)
			b.ReportMetric(float64(ca.SRTT().Microseconds()), "srtt-us")
		})
	}
}
