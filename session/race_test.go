package session

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// fake is one end of a fake path: Run does act.
type fake struct {
	name string
	plan Plan
	act  func(ctx context.Context, out *Out) error

	mu      sync.Mutex // guards started
	started time.Time
}

func (f *fake) Name() string       { return f.name }
func (f *fake) Plan(*Session) Plan { return f.plan }
func (f *fake) Run(ctx context.Context, s *Session, out *Out) error {
	f.mu.Lock()
	f.started = time.Now()
	f.mu.Unlock()
	return f.act(ctx, out)
}

func (f *fake) startedAt() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}

// behaviour makes both ends' acts of one fake path.
type behaviour func() (a, b func(ctx context.Context, out *Out) error)

// good connects the ends after wait: a pipe, one end offered at each.
func good(wait time.Duration) behaviour {
	return func() (a, b func(context.Context, *Out) error) {
		ch := make(chan net.Conn, 1)
		a = func(ctx context.Context, out *Out) error {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			x, y := net.Pipe()
			ch <- y
			return out.Offer(ctx, x)
		}
		b = func(ctx context.Context, out *Out) error {
			select {
			case y := <-ch:
				return out.Offer(ctx, y)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return a, b
	}
}

// broken offers a connection that dies before its handshake.
func broken() behaviour {
	act := func(ctx context.Context, out *Out) error {
		x, y := net.Pipe()
		y.Close()
		return out.Offer(ctx, x)
	}
	return func() (a, b func(context.Context, *Out) error) { return act, act }
}

var errFake = errors.New("fake path: nothing to try")

// failing gives up at once.
func failing() behaviour {
	act := func(context.Context, *Out) error { return errFake }
	return func() (a, b func(context.Context, *Out) error) { return act, act }
}

// silent offers nothing and, after wait, reaches its stage.
func silent(wait time.Duration) behaviour {
	act := func(ctx context.Context, out *Out) error {
		if sleep(ctx, wait) == nil {
			out.Reached()
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return func() (a, b func(context.Context, *Out) error) { return act, act }
}

// inbound delivers its connection through the sink, as a listener does,
// after wait.
func inbound(wait time.Duration) behaviour {
	return func() (a, b func(context.Context, *Out) error) {
		ch := make(chan net.Conn, 1)
		deliver := func(ctx context.Context, out *Out, c net.Conn) error {
			select {
			case out.Sink() <- c:
			case <-ctx.Done():
				c.Close()
			}
			<-ctx.Done()
			return ctx.Err()
		}
		a = func(ctx context.Context, out *Out) error {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			x, y := net.Pipe()
			ch <- y
			return deliver(ctx, out, x)
		}
		b = func(ctx context.Context, out *Out) error {
			select {
			case y := <-ch:
				return deliver(ctx, out, y)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return a, b
	}
}

type fakeSpec struct {
	name string
	plan Plan
	do   behaviour
}

// pairs makes both ends' paths.
func pairs(specs []fakeSpec) (a, b []*fake) {
	for _, sp := range specs {
		x, y := sp.do()
		a = append(a, &fake{name: sp.name, plan: sp.plan, act: x})
		b = append(b, &fake{name: sp.name, plan: sp.plan, act: y})
	}
	return a, b
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// twoEnds makes the sessions of both ends of one punch session, ends
// behind NATs nats, the server seeing their shared ports at pubs.
func twoEnds(t testing.TB, timeout time.Duration, nats [2]punch.NAT, pubs [2]netip.AddrPort) (a, b *Session) {
	t.Helper()
	id := punch.NewSessionID().String()
	var ends [2]*Session
	keys := [2]identity.PrivateKey{}
	for i := range keys {
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	for i := range ends {
		self, err := link.NewIdentity(keys[i])
		if err != nil {
			t.Fatal(err)
		}
		cfg := &Config{Self: self, Timeout: timeout, Grace: 100 * time.Millisecond}
		if err := cfg.Verify(); err != nil {
			t.Fatal(err)
		}
		pu := rendezvous.Punch{Session: id, Side: i, Peer: keys[1-i].Public(), PeerNAT: nats[1-i], Public: pubs[1-i]}
		if ends[i], err = New(cfg, Local{NAT: nats[i]}, pu, quiet()); err != nil {
			t.Fatal(err)
		}
	}
	return ends[0], ends[1]
}

type raced struct {
	l   *link.Link
	rep Report
	err error
	at  time.Duration
}

// raceBoth races both ends at once, a's ctx ending after cancelAfter
// if that is set.
func raceBoth(t *testing.T, specs []fakeSpec, cancelAfter time.Duration) (ra, rb raced, fa, fb []*fake, began time.Time) {
	sa, sb := twoEnds(t, 3*time.Second, [2]punch.NAT{}, [2]netip.AddrPort{})
	fa, fb = pairs(specs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cancelAfter > 0 {
		time.AfterFunc(cancelAfter, cancel)
	}
	var wg sync.WaitGroup
	began = time.Now()
	run := func(s *Session, fs []*fake, r *raced) {
		var paths []Path
		for _, f := range fs {
			paths = append(paths, f)
		}
		r.l, r.rep, r.err = Race(ctx, s, paths)
		r.at = time.Since(began)
	}
	wg.Go(func() { run(sa, fa, &ra) })
	wg.Go(func() { run(sb, fb, &rb) })
	wg.Wait()
	for _, r := range []raced{ra, rb} {
		if r.l != nil {
			r.l.Close()
		}
	}
	return ra, rb, fa, fb, began
}

// settle waits for the goroutine count to fall back to base, and fails
// the test if it does not: every goroutine a race starts must end with it.
func settle(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left behind:\n%s", runtime.NumGoroutine()-base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startedBetween checks that path i started between lo and hi into the
// race.
func startedBetween(i int, lo, hi time.Duration) func(*testing.T, []*fake, time.Time, Report) {
	return func(t *testing.T, f []*fake, began time.Time, _ Report) {
		if d := f[i].startedAt().Sub(began); d < lo || d > hi {
			t.Errorf("%s started %v into the race, want %v to %v", f[i].name, d, lo, hi)
		}
	}
}

func TestRace(t *testing.T) {
	for _, tc := range []struct {
		name        string
		specs       []fakeSpec
		cancelAfter time.Duration
		winner      string        // "" for no link
		within      time.Duration // both ends are done by then
		check       func(t *testing.T, a []*fake, began time.Time, rep Report)
	}{{
		name:   "the first path wins; a delayed one never starts",
		specs:  []fakeSpec{{name: "fast", do: good(0)}, {name: "slow", plan: Plan{Delay: time.Second}, do: good(0)}},
		winner: "fast", within: 500 * time.Millisecond,
		check: func(t *testing.T, _ []*fake, _ time.Time, rep Report) {
			if o := rep.Outcomes[1]; o.Started || o.Lost("fast") != "the race ended before its turn" {
				t.Errorf("slow path: %+v (%s)", o, o.Lost("fast"))
			}
		},
	}, {
		name: "a path waits for the stage another reaches",
		specs: []fakeSpec{
			{name: "prober", plan: Plan{Reaches: TCPProbed}, do: silent(200 * time.Millisecond)},
			{name: "after", plan: Plan{After: TCPProbed, AtMost: 2 * time.Second}, do: good(0)},
		},
		winner: "after", within: time.Second,
		check: startedBetween(1, 200*time.Millisecond, 700*time.Millisecond),
	}, {
		name: "a stage slow to come holds a path back at most AtMost",
		specs: []fakeSpec{
			{name: "prober", plan: Plan{Reaches: TCPProbed}, do: silent(time.Hour)},
			{name: "after", plan: Plan{After: TCPProbed, AtMost: 300 * time.Millisecond}, do: good(0)},
		},
		winner: "after", within: time.Second,
		check: startedBetween(1, 300*time.Millisecond, 800*time.Millisecond),
	}, {
		name:   "a stage no path reaches does not hold anyone",
		specs:  []fakeSpec{{name: "after", plan: Plan{After: TCPProbed, AtMost: time.Hour}, do: good(0)}},
		winner: "after", within: 500 * time.Millisecond,
	}, {
		name:   "a delay is kept",
		specs:  []fakeSpec{{name: "relay", plan: Plan{Delay: 300 * time.Millisecond}, do: good(0)}},
		winner: "relay", within: time.Second,
		check: startedBetween(0, 300*time.Millisecond, 800*time.Millisecond),
	}, {
		name:   "a failing path is reported, another wins",
		specs:  []fakeSpec{{name: "fails", do: failing()}, {name: "works", plan: Plan{Delay: 100 * time.Millisecond}, do: good(0)}},
		winner: "works", within: time.Second,
		check: func(t *testing.T, _ []*fake, _ time.Time, rep Report) {
			if o := rep.Outcomes[0]; !errors.Is(o.Err, errFake) || o.Lost("works") != errFake.Error() {
				t.Errorf("failing path: %+v", o)
			}
		},
	}, {
		name:   "a path wins late after the early one's connection fails",
		specs:  []fakeSpec{{name: "early", do: broken()}, {name: "late", do: good(400 * time.Millisecond)}},
		winner: "late", within: 1500 * time.Millisecond,
		check: func(t *testing.T, _ []*fake, _ time.Time, rep Report) {
			if o := rep.Outcomes[0]; o.Offered != 1 || o.Lost("late") != "offered 1 connections; none was nominated" {
				t.Errorf("early path: %+v (%s)", o, o.Lost("late"))
			}
		},
	}, {
		name:   "every path failing ends the race at once, not at its timeout",
		specs:  []fakeSpec{{name: "fails", do: failing()}, {name: "broken", do: broken()}},
		within: time.Second,
	}, {
		name:   "a listener's connection counts within the grace after the active paths",
		specs:  []fakeSpec{{name: "fails", do: failing()}, {name: "inbound", plan: Plan{Passive: true}, do: inbound(50 * time.Millisecond)}},
		winner: "inbound", within: time.Second,
	}, {
		name:   "a listener's connection after the grace is not waited for",
		specs:  []fakeSpec{{name: "fails", do: failing()}, {name: "inbound", plan: Plan{Passive: true}, do: inbound(time.Hour)}},
		within: time.Second,
	}, {
		name:        "cancellation ends the race and every path",
		specs:       []fakeSpec{{name: "silent", do: silent(time.Hour)}, {name: "waits", plan: Plan{Delay: time.Hour}, do: good(0)}},
		cancelAfter: 200 * time.Millisecond,
		within:      time.Second,
		check: func(t *testing.T, _ []*fake, _ time.Time, rep Report) {
			if o := rep.Outcomes[0]; !o.Started || !errors.Is(o.Err, context.Canceled) {
				t.Errorf("silent path: %+v", o)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			ra, rb, fa, _, began := raceBoth(t, tc.specs, tc.cancelAfter)
			for end, r := range map[string]raced{"a": ra, "b": rb} {
				if tc.cancelAfter > 0 && end == "b" {
					continue // b's race ends at its timeout: the peer left
				}
				got := ""
				if r.l != nil {
					got = r.l.Path()
				}
				if got != tc.winner || r.rep.Winner != tc.winner {
					t.Errorf("end %s: link over %q (report %q, err %v), want %q", end, got, r.rep.Winner, r.err, tc.winner)
				}
				if tc.winner == "" && !errors.Is(r.err, link.ErrNoCandidate) {
					t.Errorf("end %s: err %v, want ErrNoCandidate", end, r.err)
				}
				if r.at > tc.within {
					t.Errorf("end %s took %v, want within %v", end, r.at, tc.within)
				}
			}
			if tc.check != nil {
				tc.check(t, fa, began, ra.rep)
			}
			settle(t, base)
		})
	}
}
