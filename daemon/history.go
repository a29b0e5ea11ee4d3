package daemon

import (
	"context"
	"sync"
	"time"
)

// The dashboard's sparklines show each peer's throughput over the last
// historyLen × historyInterval (five minutes).
const (
	historyInterval = 5 * time.Second
	historyLen      = 60
)

// Throughput is a peer's recent traffic, oldest sample first, one sample
// per IntervalS seconds, in bits per second.
type Throughput struct {
	IntervalS float64 `json:"interval_s"`
	InBps     []int64 `json:"in_bps"`
	OutBps    []int64 `json:"out_bps"`
}

// rateHistory keeps the Throughput of every configured peer.
type rateHistory struct {
	mu    sync.Mutex // guards peers
	peers map[string]*peerRates
}

type peerRates struct {
	lastIn, lastOut int64 // byte counters at the previous sample
	in, out         []int64
}

// add records one sample: the peers' byte counters now, interval after
// the previous sample. A counter that went back belongs to a new link,
// whose bytes all came in this interval. Peers no longer listed are
// forgotten.
func (h *rateHistory) add(rows []PeerStatus, interval time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[string]*peerRates, len(rows))
	for _, row := range rows {
		r := h.peers[row.Name]
		if r == nil {
			r = &peerRates{lastIn: row.BytesIn, lastOut: row.BytesOut}
		}
		r.in = appendRate(r.in, row.BytesIn, r.lastIn, interval)
		r.out = appendRate(r.out, row.BytesOut, r.lastOut, interval)
		r.lastIn, r.lastOut = row.BytesIn, row.BytesOut
		seen[row.Name] = r
	}
	h.peers = seen
}

func appendRate(rates []int64, now, last int64, interval time.Duration) []int64 {
	d := now - last
	if d < 0 {
		d = now
	}
	rates = append(rates, int64(float64(d*8)/interval.Seconds()))
	if len(rates) > historyLen {
		rates = rates[len(rates)-historyLen:]
	}
	return rates
}

// get returns a copy of peer's history, or nil before its first sample.
func (h *rateHistory) get(peer string) *Throughput {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.peers[peer]
	if r == nil {
		return nil
	}
	return &Throughput{IntervalS: historyInterval.Seconds(),
		InBps: append([]int64{}, r.in...), OutBps: append([]int64{}, r.out...)}
}

// sampleThroughput feeds d.history until ctx ends.
func (d *Daemon) sampleThroughput(ctx context.Context) {
	t := time.NewTicker(historyInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		var rows []PeerStatus
		for _, p := range d.peerList() {
			rows = append(rows, p.status())
		}
		d.history.add(rows, historyInterval)
	}
}
