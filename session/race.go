package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
)

// Outcome is what one path did in a race.
type Outcome struct {
	Path string
	// Started is false for a path the race ended before its plan let it
	// start.
	Started bool
	// Offered counts the connections it handed to the race.
	Offered int
	// Err is what Run returned.
	Err error
}

// Report says which path won a race and what the others did.
type Report struct {
	// Winner names the nominated path; "" if the race made no link.
	Winner   string
	Outcomes []Outcome
}

// Lost says why o's path did not win a race that winner won ("" for no
// link); for a path of the winner's name that offered connections, "won".
func (o Outcome) Lost(winner string) string {
	switch {
	case !o.Started:
		return "the race ended before its turn"
	case o.Offered > 0 && o.Path == winner:
		return "won"
	case o.Offered > 0:
		return fmt.Sprintf("offered %d connections; none was nominated", o.Offered)
	case o.Err != nil && errors.Is(o.Err, context.Canceled) && winner != "":
		return "stopped: " + winner + " won"
	case o.Err != nil:
		return o.Err.Error()
	}
	return "offered no connection"
}

// race is one run of Race: its paths, their outs and outcomes.
type race struct {
	s        *Session
	paths    []Path
	plans    []Plan
	outs     []*Out
	outcomes []Outcome
	stages   *stages
	cands    chan link.Candidate
	gate     *tcpGate // nil unless a path measures the path (tcpGate)
}

// measurer is a path that measures the path to the peer before it offers
// its link, and may want direct TCP held back for it (UDP, "auto").
type measurer interface{ measures(*Session) bool }

// Race runs s's paths by their plans, authenticates every connection
// they offer (link.Establish) and returns the link over the one
// nominated, with a report of every path. Every path has returned when it
// returns; connections not used are closed.
func Race(ctx context.Context, s *Session, paths []Path) (*link.Link, Report, error) {
	// Every round trip of a long path stretches the punch, the
	// handshakes and their retransmissions.
	ctx, cancel := context.WithTimeout(ctx, min(s.scaled(s.cfg.Timeout, 20), 2*s.cfg.Timeout))
	defer cancel()
	r := newRace(s, paths)
	s.Log.WithFields(logrus.Fields{"session": s.short(), "strategy": s.Strategy.Name, "tcp_role": s.Strategy.TCP,
		"udp_role": s.Strategy.UDP, "lan": fmt.Sprint(s.PeerLAN)}).Debug("punching")
	var wg sync.WaitGroup
	r.start(ctx, &wg)
	l, err := link.Establish(ctx, r.cands, s.cfg.Self, s.Peer, s.cfg.Link, s.Log)
	cancel()
	wg.Wait()
	rep := r.report(l)
	if err != nil {
		return nil, rep, fmt.Errorf("punch session %s: %w", s.short(), err)
	}
	return l, rep, nil
}

func newRace(s *Session, paths []Path) *race {
	r := &race{s: s, paths: paths, cands: make(chan link.Candidate), outcomes: make([]Outcome, len(paths))}
	for _, p := range paths {
		r.plans = append(r.plans, p.Plan(s))
	}
	r.stages = newStages(r.plans)
	tcp := false
	for _, p := range paths {
		if m, ok := p.(measurer); ok && m.measures(s) {
			r.gate = &tcpGate{s: s, in: make(chan link.Candidate), out: r.cands}
		}
		// A TCP path whose role is none offers nothing to prefer.
		tcp = tcp || p.Name() == PathTCP && s.Strategy.TCP != punch.TCPNone
	}
	s.verdict.raced(tcp)
	for i, p := range paths {
		reaches := r.plans[i].Reaches
		var once sync.Once
		cands := r.cands
		if r.gate != nil && p.Name() == PathTCP {
			cands = r.gate.in
		}
		r.outs = append(r.outs, &Out{
			path:    p.Name(),
			passive: r.plans[i].Passive,
			cands:   cands,
			sink:    make(chan net.Conn),
			reached: func() { once.Do(func() { r.stages.reach(reaches) }) },
		})
		r.outcomes[i].Path = p.Name()
	}
	return r
}

// start runs every path and the goroutines that forward their sinks, and
// closes the candidates once every active path is done and the grace for
// inbound connections is over (or ctx ends): link.Establish then gives up
// as soon as every candidate was tried instead of at the timeout.
func (r *race) start(ctx context.Context, wg *sync.WaitGroup) {
	var active, forwarders, gate sync.WaitGroup
	if r.gate != nil {
		gate.Go(func() { r.gate.run(ctx) })
	}
	stopForwarding := make(chan struct{})
	for i := range r.paths {
		forwarders.Go(func() { r.outs[i].forward(ctx, stopForwarding) })
		if r.plans[i].Passive {
			wg.Go(func() { r.run(ctx, i) })
		} else {
			active.Go(func() { r.run(ctx, i) })
		}
	}
	wg.Go(func() {
		active.Wait()
		grace := time.NewTimer(r.s.cfg.Grace)
		defer grace.Stop()
		select {
		case <-grace.C:
		case <-ctx.Done():
		}
		close(stopForwarding)
		forwarders.Wait()
		if r.gate != nil {
			close(r.gate.in) // nothing sends to it any more
			gate.Wait()
		}
		close(r.cands)
	})
}

// run runs path i by its plan and records its outcome.
func (r *race) run(ctx context.Context, i int) {
	p, plan, out := r.paths[i], r.plans[i], r.outs[i]
	defer out.Reached()
	r.stages.wait(ctx, plan.After, plan.AtMost)
	if err := sleep(ctx, plan.Delay); err != nil {
		r.outcomes[i].Err = err
		return
	}
	r.outcomes[i].Started = true
	r.outcomes[i].Err = p.Run(ctx, r.s, out)
}

// report collects the outcomes once every path has returned.
func (r *race) report(l *link.Link) Report {
	rep := Report{Outcomes: r.outcomes}
	if l != nil {
		rep.Winner = l.Path()
	}
	for i := range rep.Outcomes {
		rep.Outcomes[i].Offered = int(r.outs[i].offered.Load())
	}
	return rep
}
