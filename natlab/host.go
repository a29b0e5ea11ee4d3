package natlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sync"
)

// Host is one network namespace of a lab: the server, a host at a site, or
// a router (see Site.Routers). Its methods are safe for concurrent use.
type Host struct {
	name string // namespace name

	mu    sync.Mutex   // guards addrs, which Site.Renumber changes
	addrs []netip.Addr // addrs[0] is the primary address
}

// Name returns the host's network namespace name, as used by
// `ip netns exec NAME ...`.
func (h *Host) Name() string { return h.name }

// Addr returns the host's primary IPv4 address: its LAN address behind a
// NAT, its public address on the internet segment, a router's WAN address.
func (h *Host) Addr() netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addrs[0]
}

// Addrs returns all of the host's addresses, primary first. The server has
// two on the internet segment; a router has its WAN then its LAN address.
func (h *Host) Addrs() []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]netip.Addr(nil), h.addrs...)
}

// String returns the namespace name and primary address.
func (h *Host) String() string { return fmt.Sprintf("%s(%s)", h.name, h.Addr()) }

// Command returns a command that runs `ip netns exec NAME name args...`,
// that is the program inside the host's namespace (with the process's own
// file system, environment and user). ip execs the program in place, so
// killing the command (or cancelling ctx) kills the program itself. Lab.Close
// kills whatever still runs in the lab's namespaces.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.name, name}, args...)...)
}

// Run runs a program inside the host's namespace and returns its combined
// output; a failure's error includes that output.
func (h *Host) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := run(ctx, "", "ip", append([]string{"netns", "exec", h.name, name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("natlab: %w", err)
	}
	return out, nil
}

// Do runs fn in this process, on a goroutine whose OS thread is inside the
// host's namespace, and returns fn's error. Sockets created during fn
// (net.ListenPacket, net.Listen, net.Dialer.DialContext, and connections a
// listener made there accepts later) belong to the host for their whole life
// and can be used from any goroutine afterwards. This lets tests drive
// in-process code as if it ran on the host, without a binary.
//
// fn runs on its own goroutine, so it must not call t.FailNow and friends;
// return an error instead. Goroutines fn starts do not inherit the
// namespace.
func (h *Host) Do(fn func() error) error { return inNetns(h.name, fn) }

// ListenPacket is net.ListenPacket inside the host's namespace.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.Do(func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// Listen is net.Listen inside the host's namespace.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// DialContext dials from inside the host's namespace with d (nil means a
// zero net.Dialer), so d.LocalAddr and d.Control apply as usual.
func (h *Host) DialContext(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	var c net.Conn
	err := h.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
