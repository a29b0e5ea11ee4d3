package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// RFC 6886 section 3.1 and RFC 6887 section 8.1.1: the first
// retransmission after 250 ms, doubling each time.
const firstRetransmit = 250 * time.Millisecond

// exchange sends req to the router at to from a socket connected to it
// (so that only the router's answers arrive) and returns the first answer
// that decode accepts. decode errors wrapping errIgnored drop that packet
// and the wait goes on; any other error ends the exchange. It
// retransmits until ctx ends.
func exchange(ctx context.Context, to netip.AddrPort, req []byte, decode func([]byte) error) error {
	conn, err := dialRouter(ctx, to)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 1100) // PCP's maximum message size
	wait := firstRetransmit
	var ignored error
	for {
		if _, err := conn.Write(req); err != nil {
			return fmt.Errorf("send to %v: %w", to, err)
		}
		next := time.Now().Add(wait)
		wait *= 2
		for {
			if ctx.Err() != nil {
				return errors.Join(fmt.Errorf("no answer from %v: %w", to, ctx.Err()), ignored)
			}
			_ = conn.SetReadDeadline(next)
			n, err := conn.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			if err != nil {
				// A timeout means retransmit; ICMP port unreachable
				// (ECONNREFUSED) means nothing listens yet: retry too,
				// as the router may be starting.
				sleep(ctx, time.Until(next))
				break
			}
			err = decode(buf[:n])
			if err == nil || !errors.Is(err, errIgnored) {
				return err
			}
			ignored = err
		}
	}
}

// dialRouter returns a UDP socket connected to the router.
func dialRouter(ctx context.Context, to netip.AddrPort) (*net.UDPConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", to.String())
	if err != nil {
		return nil, fmt.Errorf("dial %v: %w", to, err)
	}
	return c.(*net.UDPConn), nil
}

// localAddr returns this host's address on the way to the router: the
// address a mapping is made for.
func localAddr(ctx context.Context, gw netip.Addr) (netip.Addr, error) {
	c, err := dialRouter(ctx, netip.AddrPortFrom(gw, pmpPort))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
