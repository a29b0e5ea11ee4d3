package daemon

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/forward"
)

// trafficSummaryInterval is how often the daemon sums up its forwarded
// connections at info when their own lines are at debug (access_log off).
const trafficSummaryInterval = time.Minute

// summarizeTraffic logs, every interval in which anything happened, how
// many connections the local listeners and the exit served and refused,
// and the bytes they carried, until ctx ends.
func (d *Daemon) summarizeTraffic(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	local, exit := d.listeners.Stats(), d.exit.Stats()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		nl, ne := d.listeners.Stats(), d.exit.Stats()
		if f, ok := trafficSummary(local, nl, exit, ne); ok {
			d.log.WithFields(f).WithField("interval", interval).Info("forwarded connections")
		}
		local, exit = nl, ne
	}
}

// trafficSummary is what changed between two samples of the local
// listeners' and the exit's counters, and whether anything did.
func trafficSummary(local, nowLocal, exit, nowExit forward.Stats) (logrus.Fields, bool) {
	f := logrus.Fields{}
	add := func(key string, was, now uint64) {
		if now > was {
			f[key] = now - was
		}
	}
	add("local", local.Conns, nowLocal.Conns)
	add("local_refused", local.Refused, nowLocal.Refused)
	add("local_bytes_in", local.BytesIn, nowLocal.BytesIn)
	add("local_bytes_out", local.BytesOut, nowLocal.BytesOut)
	add("exit", exit.Conns, nowExit.Conns)
	add("exit_refused", exit.Refused, nowExit.Refused)
	add("exit_bytes_in", exit.BytesIn, nowExit.BytesIn)
	add("exit_bytes_out", exit.BytesOut, nowExit.BytesOut)
	return f, len(f) > 0
}
