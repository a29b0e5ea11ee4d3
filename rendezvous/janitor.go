package rendezvous

import (
	"time"

	"github.com/warren-p2p/warren/punch"
)

// sweepInterval is how often the janitor sweeps (or more often, to log
// refusals at a shorter RefusalLogInterval).
const sweepInterval = time.Second

// holdJanitor makes sure the janitor runs, until the returned function is
// called; it runs while anyone holds it.
func (s *Server) holdJanitor() (release func()) {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if s.jusers++; s.jusers == 1 {
		s.jstop, s.jdone = make(chan struct{}), make(chan struct{})
		go s.janitor(s.jstop, s.jdone)
		// The node's part in its cluster lives as long as its serving.
		s.cluster.start()
	}
	return func() {
		s.jmu.Lock()
		s.jusers--
		var done chan struct{}
		if s.jusers == 0 {
			close(s.jstop)
			done = s.jdone
			s.cluster.stop()
		}
		s.jmu.Unlock()
		if done != nil {
			<-done
		}
	}
}

// janitor sweeps the server's state every sweepInterval, and logs the
// refusal summaries, until stop closes.
func (s *Server) janitor(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(min(sweepInterval, s.cfg.RefusalLogInterval))
	defer t.Stop()
	for {
		select {
		case <-stop:
			s.refusals.flush(time.Now(), true)
			return
		case now := <-t.C:
			s.sweep(now)
			s.refusals.flush(now, false)
		}
	}
}

// sweep drops expired pair and session records and forgets idle sources,
// and rebuilds the maps that a burst left much larger than they are now
// (see shrink).
func (s *Server) sweep(now time.Time) {
	s.mu.Lock()
	for k, ps := range s.pairs {
		if now.Sub(ps.at) > s.cfg.PairWindow {
			delete(s.pairs, k)
		}
	}
	// Sessions are issued in time order: the expired ones are the
	// oldest.
	for s.order.len() > 0 && now.Sub(s.issued[s.order.peek()].at) > s.cfg.RelayWindow {
		delete(s.issued, s.order.pop())
	}
	s.peers = shrink(s.peers, &s.peaks.peers)
	s.observers = shrink(s.observers, &s.peaks.observers)
	s.pairs = shrink(s.pairs, &s.peaks.pairs)
	s.sessions = shrink(s.sessions, &s.peaks.sessions)
	s.issued = shrink(s.issued, &s.peaks.issued)
	s.mu.Unlock()
	s.relays.mu.Lock()
	s.relays.waiting = shrink(s.relays.waiting, &s.peaks.waiting)
	s.relays.mu.Unlock()
	s.relays.spent.sweep(now)
	s.guard.sweep(now)
	s.probes.sweep(now)
	s.meter.sweep(now)
	s.cluster.sweep(now)
	s.logs.Flush(now)
}

// sessionQueue is a FIFO of session IDs.
type sessionQueue struct {
	ids  []punch.SessionID
	head int
}

func (q *sessionQueue) len() int                { return len(q.ids) - q.head }
func (q *sessionQueue) peek() punch.SessionID   { return q.ids[q.head] }
func (q *sessionQueue) push(id punch.SessionID) { q.ids = append(q.ids, id) }

func (q *sessionQueue) pop() punch.SessionID {
	id := q.ids[q.head]
	q.head++
	// Move the rest to a fresh array once half of it is spent, so that
	// neither the spent half nor a burst's capacity stays.
	if q.head > len(q.ids)/2 {
		q.ids, q.head = append([]punch.SessionID(nil), q.ids[q.head:]...), 0
	}
	return id
}
