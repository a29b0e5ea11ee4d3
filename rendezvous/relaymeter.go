package rendezvous

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/warren-p2p/warren/identity"
)

// relayMeter meters what each key relays: how many relay halves it holds
// at once, the bytes per second it sends (all its relays together, so a
// key cannot multiply its rate by opening more), and the bytes it sends
// in a day. A relay half is bound to its key before it gets here (see
// relayKey): a byte is billed to the key that sent it, never to a key
// some connection names.
type relayMeter struct {
	rate   rate.Limit // rate.Inf: no rate
	burst  int
	daily  int64 // unlimited: no budget
	perKey int   // unlimited: no cap

	// mu guards the fields below and every keyMeter's used, day and
	// relays.
	mu   sync.Mutex
	keys map[identity.PublicKey]*keyMeter
	peak int // for shrink
}

// keyMeter is what the meter knows of one key.
type keyMeter struct {
	lim    *rate.Limiter // nil without a rate; safe to use without mu
	day    time.Time     // when the budget's day began
	used   int64         // bytes sent since day
	relays int           // relay halves held now
}

// minRelayBurst is the smallest rate burst: a slow rate still lets a
// small write through at once.
const minRelayBurst = 16 << 10

// budgetDay is the period a relay budget covers.
const budgetDay = 24 * time.Hour

// maxMeteredKeys bounds the keys the meter remembers. Past it, a key
// that holds no relay is forgotten (its budget with it) for a newcomer:
// fresh keys cost nothing, so a budget per key bounds what one key does,
// not what one person does; the per-source caps do that.
const maxMeteredKeys = 1 << 16

func newRelayMeter(cfg ServerConfig) *relayMeter {
	m := &relayMeter{rate: rate.Inf, daily: cfg.RelayDailyBytes, perKey: cfg.MaxRelaysPerKey,
		keys: make(map[identity.PublicKey]*keyMeter)}
	if cfg.RelayRate > 0 {
		// A second's worth, so that a fast relay waits rarely, and never
		// less than a small write (spend waits in bursts).
		m.rate, m.burst = rate.Limit(cfg.RelayRate), int(max(cfg.RelayRate, minRelayBurst))
	}
	return m
}

// acquire takes one relay half for key, or returns the reason it may not
// have one: it holds its cap of relays, or has spent its day's budget.
func (m *relayMeter) acquire(key identity.PublicKey, now time.Time) (*keyMeter, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	km := m.keys[key]
	if km == nil {
		if len(m.keys) >= maxMeteredKeys {
			m.forgetOneLocked()
		}
		km = &keyMeter{day: now}
		if m.rate != rate.Inf {
			km.lim = rate.NewLimiter(m.rate, m.burst)
		}
		m.keys[key] = km
		m.peak = max(m.peak, len(m.keys))
	}
	km.rollLocked(now)
	switch {
	case over(km.relays, m.perKey):
		return nil, refusedKeyRelays
	case m.daily != unlimited && km.used >= m.daily:
		return nil, refusedRelayBudget
	}
	km.relays++
	return km, ""
}

// forgetOneLocked forgets a key that holds no relay. Map iteration starts
// at a random place, so this finds one in a few steps when most are idle
// (at most 2*MaxRelays keys hold one).
func (m *relayMeter) forgetOneLocked() {
	for k, km := range m.keys {
		if km.relays == 0 {
			delete(m.keys, k)
			return
		}
	}
}

// rollLocked starts a new budget day once the last is over.
func (km *keyMeter) rollLocked(now time.Time) {
	if now.Sub(km.day) >= budgetDay {
		km.day, km.used = now, 0
	}
}

// release gives back a relay half acquire took.
func (m *relayMeter) release(km *keyMeter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	km.relays--
}

// spend bills n bytes that km's key sent: it waits for the key's rate,
// then reports whether the key is still within its day's budget (the
// bytes that cross it are the last it relays today).
func (m *relayMeter) spend(ctx context.Context, km *keyMeter, n int) bool {
	if km.lim != nil {
		// WaitN refuses more than the burst at once; a copy's write may be.
		for left := n; left > 0; left -= m.burst {
			if km.lim.WaitN(ctx, min(left, m.burst)) != nil {
				return false
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	km.rollLocked(time.Now())
	km.used += int64(n)
	return m.daily == unlimited || km.used <= m.daily
}

// sweep forgets keys that hold no relay and whose record changes
// nothing: it sent nothing this day (and its rate bucket is full), or its
// day is over.
func (m *relayMeter) sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, km := range m.keys {
		idle := km.used == 0 && (km.lim == nil || km.lim.TokensAt(now) >= float64(m.burst))
		if km.relays == 0 && (idle || now.Sub(km.day) >= budgetDay) {
			delete(m.keys, k)
		}
	}
	m.keys = shrink(m.keys, &m.peak)
}
