package labtest

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
)

// Require skips the test, with one line saying why, where the kernel lab
// cannot run (not root, tools missing), except under CI (CI=true), where a
// silently skipped lab would hide that nothing was tested: there it fails.
func Require(t testing.TB) {
	t.Helper()
	if err := natlab.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the lab is required, not skipped)", err)
		}
		t.Skipf("!!! SKIPPED: %v", err)
	}
}

// New builds a lab for the test and registers its Close with t.Cleanup.
// Where the kernel lab cannot run, it skips or fails the test as Require
// does.
//
// Until the test ends, SIGINT and SIGTERM close the lab before the process
// dies, and the lab is closed shortly before the test binary's -timeout
// would kill the process without running cleanups. Before building, New
// removes labs orphaned by test processes that were killed outright
// (natlab.Reap).
func New(t testing.TB, cfg natlab.Config) *natlab.Lab {
	t.Helper()
	Require(t)
	ctx := context.Background()
	deadline, hasDeadline := testDeadline(t)
	if hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	// Labs whose test binary was killed outright (SIGKILL, a CI job's
	// time limit) are garbage; clear them before adding another.
	if reaped, err := natlab.Reap(ctx); err != nil {
		t.Logf("natlab: reaping orphaned labs: %v", err)
	} else if len(reaped) > 0 {
		t.Logf("natlab: removed orphaned labs %v", reaped)
	}
	lab, err := natlab.New(ctx, cfg)
	if err != nil {
		t.Fatalf("natlab: %v", err)
	}
	stop := guard(t, lab, deadline, hasDeadline)
	t.Cleanup(func() {
		stop()
		if err := lab.Close(); err != nil {
			t.Errorf("natlab: %v", err)
		}
	})
	return lab
}

// testDeadline is t.Deadline for a *testing.T (testing.TB lacks it).
func testDeadline(t testing.TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}

// guard closes lab on SIGINT/SIGTERM and just before the test deadline,
// until the returned stop is called.
//
// On a signal it closes the lab, stops listening and sends the signal to
// the process again. Each lab of a test binary has its own guard, so the
// re-sent signal reaches the guards still closing their labs, and only
// after the last one has stopped listening does it take its default
// action and end the process. No guard calls os.Exit, which would cut the
// others short.
func guard(t testing.TB, lab *natlab.Lab, deadline time.Time, hasDeadline bool) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	var timeout <-chan time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	if hasDeadline {
		// testing panics at the deadline without running cleanups; leave
		// Close time to finish first.
		margin := min(5*time.Second, time.Until(deadline)/10)
		timer.Reset(time.Until(deadline) - margin)
		timeout = timer.C
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(sigs)
		select {
		case sig := <-sigs:
			_ = lab.Close()
			signal.Stop(sigs)
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Signal(sig)
			}
		case <-timeout:
			// The line explains the failures that closing the lab under
			// the running test will cause.
			t.Log("natlab: test deadline near, closing lab " + lab.Prefix())
			_ = lab.Close()
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		<-done
		timer.Stop()
	}
}
