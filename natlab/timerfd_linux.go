//go:build linux

package natlab

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// releaseTimer is a timerfd read through Go's poller: it wakes a
// goroutine at a time precise to microseconds, where a Go timer wakes it
// up to a millisecond late (the poller sleeps in whole milliseconds),
// which would add up to 4 ms to every emulated round trip.
type releaseTimer struct{ f *os.File }

func newReleaseTimer() (*releaseTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &releaseTimer{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// arm makes wait return after d (at once if d <= 0), or with forever
// never.
func (t *releaseTimer) arm(d time.Duration, forever bool) error {
	var spec unix.ItimerSpec
	if !forever {
		// A zero value would disarm: the earliest is 1 ns.
		spec.Value = unix.NsecToTimespec(max(int64(d), 1))
	}
	raw, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.TimerfdSettime(int(fd), 0, &spec, nil)
	}); err != nil {
		return err
	}
	return serr
}

// wait blocks until the timer fires or is closed.
func (t *releaseTimer) wait() error {
	var expiries [8]byte // how many times it fired: unused
	_, err := t.f.Read(expiries[:])
	return err
}

func (t *releaseTimer) Close() error { return t.f.Close() }
