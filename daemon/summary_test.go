package daemon

import (
	"reflect"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/forward"
)

func TestTrafficSummary(t *testing.T) {
	zero := forward.Stats{}
	for _, tc := range []struct {
		name                  string
		local, nowLocal, exit forward.Stats
		nowExit               forward.Stats
		want                  logrus.Fields
	}{
		{"nothing happened", zero, zero, zero, zero, nil},
		{"50 SOCKS5 requests, 2 refused", forward.Stats{Conns: 10, BytesIn: 100}, forward.Stats{Conns: 60, Refused: 2, BytesIn: 5100, BytesOut: 700}, zero, zero,
			logrus.Fields{"local": uint64(50), "local_refused": uint64(2), "local_bytes_in": uint64(5000), "local_bytes_out": uint64(700)}},
		{"the exit side", zero, zero, forward.Stats{Conns: 3}, forward.Stats{Conns: 4, BytesOut: 9},
			logrus.Fields{"exit": uint64(1), "exit_bytes_out": uint64(9)}},
	} {
		got, ok := trafficSummary(tc.local, tc.nowLocal, tc.exit, tc.nowExit)
		if ok != (tc.want != nil) || (tc.want != nil && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("%s: %v %v, want %v", tc.name, got, ok, tc.want)
		}
	}
}
