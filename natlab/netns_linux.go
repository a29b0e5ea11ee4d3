//go:build linux

package natlab

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

func platformSupported() error { return nil }

// inNetns runs fn on a fresh goroutine whose OS thread has been moved into
// the named network namespace. Sockets that fn creates belong to that
// namespace for their whole life, whichever goroutine uses them later.
//
// The goroutine is locked to its thread for the duration. If the thread
// cannot be moved back, it is left locked: the Go runtime then discards the
// thread when the goroutine exits, so no other goroutine ever runs in the
// wrong namespace.
func inNetns(ns string, fn func() error) error {
	target, err := os.Open(netnsPath(ns))
	if err != nil {
		return fmt.Errorf("natlab: open namespace %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("natlab: open current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("natlab: enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("natlab: leave namespace %s: %w", ns, err))
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// writeSysctls sets /proc/sys/KEY = value inside namespace ns. /proc/sys/net
// shows the namespace of the thread that opens it, so this needs no
// process of its own. Keys marked optional may be missing (a kernel without
// IPv6 or bridge netfilter) without error.
func writeSysctls(ns string, kv []sysctl) error {
	return inNetns(ns, func() error {
		for _, s := range kv {
			err := os.WriteFile("/proc/sys/"+s.key, []byte(s.value), 0)
			if err != nil && !(s.optional && errors.Is(err, os.ErrNotExist)) {
				return fmt.Errorf("sysctl %s=%s: %w", s.key, s.value, err)
			}
		}
		return nil
	})
}

type sysctl struct {
	key, value string
	optional   bool
}

// ownSession puts a background helper in a session of its own, so that a
// Ctrl-C in the terminal that started the lab does not reach it; Close
// stops it instead.
func ownSession() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// processExists reports whether process pid is alive (signal 0 checks
// without sending anything).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
