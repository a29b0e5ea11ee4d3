package rendezvous

import (
	"context"
	"sync"
	"time"
)

// UDPStep is one punch session's second step, which the server sends
// after both sides' session probes (or its UDPWait): a value to wait on,
// handed out with the session's Punch. Any number of goroutines may wait
// on it.
type UDPStep struct {
	c       *Client
	session string
	ready   chan struct{} // closed once info is set
	once    sync.Once
	info    UDPInfo
}

// maxPendingSteps bounds the steps a client waits for at once. A server
// sends each within its UDPWait (1s) of the punch, so only a server gone
// wrong leaves this many waiting; the sessions beyond it go without their
// second step (their UDP path gives up) rather than grow the map.
const maxPendingSteps = 1024

// expectUDP returns the step of session, making it on its first punch.
func (c *Client) expectUDP(session string) *UDPStep {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.steps[session]; ok {
		return st
	}
	st := &UDPStep{c: c, session: session, ready: make(chan struct{})}
	if len(c.steps) >= maxPendingSteps {
		st.c = nil // never delivered, nothing to forget
		return st
	}
	c.steps[session] = st
	return st
}

// deliverUDP hands info to its session's step. The server sends one per
// session; one for no session this connection carried is dropped.
func (c *Client) deliverUDP(info UDPInfo) {
	c.mu.Lock()
	st, ok := c.steps[info.Session]
	delete(c.steps, info.Session)
	c.mu.Unlock()
	if ok {
		st.set(info)
	}
}

func (st *UDPStep) set(info UDPInfo) {
	st.once.Do(func() {
		st.info = info
		close(st.ready)
	})
}

// Wait returns the step, or false if it does not come within max (or ctx
// ends first). A nil step never comes.
func (st *UDPStep) Wait(ctx context.Context, max time.Duration) (UDPInfo, bool) {
	if st == nil {
		return UDPInfo{}, false
	}
	select {
	case <-st.ready:
		return st.info, true
	default:
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-st.ready:
		return st.info, true
	case <-t.C:
	case <-ctx.Done():
	}
	return UDPInfo{}, false
}

// Close tells the client the session is over: a step still to come is
// dropped when it arrives. Waiters already waiting time out as before.
func (st *UDPStep) Close() {
	if st == nil || st.c == nil {
		return
	}
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	if st.c.steps[st.session] == st {
		delete(st.c.steps, st.session)
	}
}
