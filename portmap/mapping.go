package portmap

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/internal/backoff"
)

// Mapping is one port mapping on the router, renewed at half its lifetime
// until Close. Its methods are safe for concurrent use.
type Mapping struct {
	c        *Client
	t        Transport
	internal uint16
	changes  chan netip.AddrPort // the newest changed endpoint; written by run only
	stop     context.CancelFunc  // ends run
	done     chan struct{}       // closed when run has returned

	// mu guards all following fields.
	mu       sync.Mutex
	m        mapper
	l        lease
	expires  time.Time // zero for a permanent lease
	renewals int
	lost     bool // the lease expired and is not made again yet
	closed   bool
}

// External returns the endpoint peers on the internet reach the port at,
// or the zero AddrPort while the mapping is lost (its lease expired and
// the router has not granted it again yet).
func (m *Mapping) External() netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lost {
		return netip.AddrPort{}
	}
	return m.l.external
}

// Protocol returns the protocol that holds the mapping now.
func (m *Mapping) Protocol() Protocol {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.protocol()
}

// Transport and Internal return what was mapped.
func (m *Mapping) Transport() Transport { return m.t }
func (m *Mapping) Internal() uint16     { return m.internal }

// Expires returns when the router drops the mapping unless renewed; the
// zero time for a permanent mapping (deleted on Close all the same).
func (m *Mapping) Expires() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.expires
}

// Renewals returns how many times the lease was renewed.
func (m *Mapping) Renewals() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.renewals
}

// Changes delivers the new external endpoint when a renewal (or a new
// mapping after a lost one) changes it, the zero AddrPort when the lease
// expired without renewal (the mapping is lost; a later success delivers
// the endpoint again). Only the newest is kept: a slow reader sees the
// latest, not every step.
func (m *Mapping) Changes() <-chan netip.AddrPort { return m.changes }

func (m *Mapping) set(mp mapper, l lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m, m.l = mp, l
	m.expires = time.Time{}
	if l.lifetime > 0 {
		m.expires = time.Now().Add(l.lifetime)
	}
}

func (m *Mapping) logger() logrus.FieldLogger {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c.log.WithFields(logrus.Fields{"protocol": m.m.protocol(), "transport": m.t,
		"port": m.internal, "external": m.l.external})
}

// renewIn returns when to renew: at half the granted lifetime, or for a
// permanent mapping at half the configured one (to notice a router that
// lost it).
func (m *Mapping) renewIn() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.l.lifetime > 0 {
		return m.l.lifetime / 2
	}
	return m.c.cfg.Lifetime / 2
}

// run renews the lease until ctx ends. A failed renewal is retried with
// backoff; once the lease has expired it is made again from scratch, with
// whichever protocol answers then.
func (m *Mapping) run(ctx context.Context) {
	defer close(m.done)
	b := backoff.Backoff{Min: time.Second, Max: 30 * time.Second}
	wait := m.renewIn()
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := m.renew(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			wait = b.Next()
			if exp := m.Expires(); !exp.IsZero() && time.Until(exp) > 0 {
				wait = min(wait, time.Until(exp))
			} else if !exp.IsZero() {
				m.markLost()
			}
			m.logger().WithError(err).WithField("retry_in", wait.Round(time.Millisecond)).Warn("port mapping renewal failed")
			continue
		}
		b.Reset()
		wait = m.renewIn()
	}
}

// renew renews the lease with the protocol that holds it, or after expiry
// makes a new one, and reports a changed external endpoint.
func (m *Mapping) renew(ctx context.Context) error {
	m.mu.Lock()
	mp, prev, exp := m.m, m.l, m.expires
	m.mu.Unlock()
	before := prev.external
	if !exp.IsZero() && time.Now().After(exp) {
		if err := m.acquire(ctx, &prev); err != nil {
			return err
		}
	} else {
		e, err := m.c.env(ctx)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, m.c.cfg.RequestTimeout)
		l, err := mp.add(rctx, mapRequest{t: m.t, internal: m.internal, local: e.local, lifetime: m.c.cfg.Lifetime, prev: &prev})
		cancel()
		if err != nil {
			return fmt.Errorf("portmap: renew %s port %d with %s: %w", m.t, m.internal, mp.protocol(), err)
		}
		m.set(mp, l)
	}
	m.mu.Lock()
	m.renewals++
	now, wasLost := m.l.external, m.lost
	m.lost = false
	m.mu.Unlock()
	if now != before || wasLost {
		m.logger().WithField("was", before).Info("port mapping's external endpoint changed")
		m.notify(now)
	}
	return nil
}

// markLost records that the lease expired unrenewed and reports it once.
func (m *Mapping) markLost() {
	m.mu.Lock()
	was := m.lost
	m.lost = true
	m.mu.Unlock()
	if !was {
		m.logger().Warn("port mapping lost: its lease expired unrenewed")
		m.notify(netip.AddrPort{})
	}
}

// notify delivers a on Changes, replacing what the reader has not taken.
// Only run calls it, so the drain and the send do not race another sender.
func (m *Mapping) notify(a netip.AddrPort) {
	select {
	case <-m.changes:
	default:
	}
	m.changes <- a
}

// Close stops the renewals and deletes the mapping from the router,
// waiting at most the close timeout (and no longer than ctx).
func (m *Mapping) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.stop()
	<-m.done
	m.c.mu.Lock()
	delete(m.c.mappings, m)
	m.c.mu.Unlock()
	err := m.delete(ctx)
	if err != nil {
		m.logger().WithError(err).Warn("could not delete port mapping; it lapses with its lease")
	}
	return err
}

// delete removes the mapping from the router within the close timeout.
func (m *Mapping) delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.c.cfg.CloseTimeout)
	defer cancel()
	m.mu.Lock()
	mp, l := m.m, m.l
	m.mu.Unlock()
	if err := mp.remove(ctx, m.t, m.internal, l); err != nil {
		return fmt.Errorf("portmap: delete %s mapping of %s port %d (%v): %w", mp.protocol(), m.t, m.internal, l.external, err)
	}
	return nil
}
