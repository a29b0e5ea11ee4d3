package session

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-p2p/warren/link"
)

// Path is one way of reaching a peer. Run turns a session into raw
// connections to the peer and hands them to out; the race has link
// authenticate them. Run returns once it has nothing more to offer, or
// with ctx's error once the race is over; it closes what it opened.
type Path interface {
	// Name is the path's name as links report it (PathTCP, ...).
	Name() string
	// Plan says when the path starts in s.
	Plan(s *Session) Plan
	Run(ctx context.Context, s *Session, out *Out) error
}

// Stage names a point in a punch session that paths may wait for.
type Stage string

// TCPProbed is reached once the TCP session probe of a connect-fixed
// role has reached the rendezvous server. The server predicts the peer's
// next TCP port from that probe, and it sends the session's second step
// (which the UDP session probe releases) with the prediction's base: the
// UDP path waits for this stage.
const TCPProbed Stage = "tcp-probed"

// Plan is when a path starts within a race, and what it signals.
type Plan struct {
	// After is the stage the path waits for before it starts; "" starts
	// at once. A stage no path of the race reaches counts as reached.
	After Stage
	// AtMost bounds the wait for After: a path that is slow to reach it
	// must not hold this one back for the whole race. Zero: no bound.
	AtMost time.Duration
	// Delay is waited once After is reached (or AtMost is over).
	Delay time.Duration
	// Reaches is the stage this path reaches when it calls Out.Reached
	// or returns, whichever is first.
	Reaches Stage
	// Passive paths only take what arrives at a listener (Out.Sink): the
	// race stops forwarding their connections Config.Grace after every
	// other path is done, and does not wait for them before it gives up.
	Passive bool
}

// Out is where a path hands its connections to the race.
type Out struct {
	path    string
	passive bool
	cands   chan<- link.Candidate
	sink    chan net.Conn
	reached func()
	offered atomic.Int32
}

// Offer hands conn to the race as a candidate. Once the race is over
// (ctx is done) it closes conn and returns ctx's error.
func (o *Out) Offer(ctx context.Context, conn net.Conn) error {
	if o.passive {
		select {
		case o.sink <- conn:
			return nil
		case <-ctx.Done():
			conn.Close()
			return ctx.Err()
		}
	}
	select {
	case o.cands <- link.Candidate{Conn: conn, Path: o.path}:
		o.offered.Add(1)
		return nil
	case <-ctx.Done():
		conn.Close()
		return ctx.Err()
	}
}

// Sink is a channel for listeners and punch loops that deliver
// connections on a channel (punch.TCP, punch.Acceptor). The race takes
// from it until every active path is done and Config.Grace has passed;
// a sender must give up when its context ends.
func (o *Out) Sink() chan<- net.Conn { return o.sink }

// Reached marks the path's stage (Plan.Reaches) as reached. Later calls
// do nothing.
func (o *Out) Reached() { o.reached() }

// forward hands what arrives on the sink to the race as candidates,
// until stop or ctx ends.
func (o *Out) forward(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case c := <-o.sink:
			select {
			case o.cands <- link.Candidate{Conn: c, Path: o.path}:
				o.offered.Add(1)
			case <-ctx.Done():
				c.Close()
			}
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// stages holds a race's stages, each closed once reached.
type stages struct {
	mu sync.Mutex // guards m
	m  map[Stage]chan struct{}
}

// newStages makes the stages the plans reach; every other one is
// reached from the start.
func newStages(plans []Plan) *stages {
	st := &stages{m: make(map[Stage]chan struct{})}
	for _, p := range plans {
		if p.Reaches != "" {
			st.m[p.Reaches] = make(chan struct{})
		}
	}
	return st
}

// reach marks s reached, once.
func (st *stages) reach(s Stage) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ch, ok := st.m[s]; ok {
		close(ch)
		delete(st.m, s)
	}
}

// wait waits for s, at most max (or until ctx ends).
func (st *stages) wait(ctx context.Context, s Stage, max time.Duration) {
	st.mu.Lock()
	ch, ok := st.m[s]
	st.mu.Unlock()
	if !ok {
		return
	}
	var timeout <-chan time.Time
	if max > 0 {
		t := time.NewTimer(max)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
	case <-timeout:
	case <-ctx.Done():
	}
}
