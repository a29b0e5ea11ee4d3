//go:build linux

package natlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// The emulator runs as a helper process: the binary that built the lab
// (a test binary, the natlab command) run again with wireEnv set, inside
// the uplink's namespace. A process rather than goroutines so that a
// detached lab's emulators outlive `natlab up`, and so that `natlab down`
// and Close stop them as they stop every process in a lab's namespaces.
// This hook takes over any binary that imports natlab when wireEnv is set,
// before its main or tests start.
func init() {
	if mode := os.Getenv(wireEnv); mode != "" {
		os.Exit(wireMain(mode == wireDetached))
	}
}

func wireMain(detached bool) int {
	if err := serveWire(detached, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "natlab uplink emulator: %v\n", err)
		return 1
	}
	return 0
}

// serveWire bridges the namespace's devices wireIn and wireOut, shaped by
// the profiles read from ctl, one JSON line each, each answered on reply
// with "ok" or "error: ..." once in force. The first line comes before
// any frame passes. It returns on SIGTERM or SIGINT, or when ctl ends
// unless detached (the owning process has gone).
func serveWire(detached bool, ctl io.Reader, reply io.Writer) error {
	// One P: the pumps spend their time in system calls (which hand the
	// P on when they block), and with more Ps the scheduler spins looking
	// for work after every frame: at 100 Mbit/s through a rate limit that
	// cost 60% of a core against 37% with one, at the same throughput.
	runtime.GOMAXPROCS(1)
	in, err := openPacketSock(wireIn)
	if err != nil {
		return err
	}
	out, err := openPacketSock(wireOut)
	if err != nil {
		in.Close()
		return err
	}
	up, err := newPump(in, out, hubAddr)
	if err != nil {
		return errors.Join(err, in.Close(), out.Close())
	}
	down, err := newPump(out, in, hubAddr)
	if err != nil {
		return errors.Join(err, in.Close(), out.Close(), up.timer.Close())
	}
	lines := bufio.NewScanner(ctl)
	err = errors.New("no profile on standard input")
	if lines.Scan() {
		err = applyLine(lines.Bytes(), up, down, reply)
	}
	if err != nil {
		return errors.Join(err, in.Close(), out.Close(), up.timer.Close(), down.timer.Close())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// This goroutine ends with ctl, or with the process.
	go func() {
		for lines.Scan() {
			_ = applyLine(lines.Bytes(), up, down, reply)
		}
		if !detached {
			cancel()
		}
	}()
	return runPumps(ctx, in, out, up, down)
}

// applyLine carries out the control message in line and answers "ok",
// "ok " and the counters as JSON, or "error: " and why.
func applyLine(line []byte, up, down *pump, reply io.Writer) error {
	var c control
	err := json.Unmarshal(line, &c)
	switch {
	case err != nil:
	case c.Stats:
		var b []byte
		if b, err = json.Marshal(UplinkStats{Up: up.counters(), Down: down.counters()}); err == nil {
			_, err = fmt.Fprintf(reply, "ok %s\n", b)
			return err
		}
	case c.Profile == nil:
		err = errors.New("empty control message")
	default:
		if err = c.Profile.Verify(); err == nil {
			p := c.Profile
			up.set(p.Up, p.MTU, p.DropICMP)
			down.set(p.Down, p.MTU, p.DropICMP)
			_, err = fmt.Fprintln(reply, "ok")
			return err
		}
	}
	fmt.Fprintf(reply, "error: %v\n", err)
	return err
}
