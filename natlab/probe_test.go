package natlab_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
)

// The probe: a responder on the server host answers each UDP datagram and
// TCP connection with the source address it saw, i.e. the public mapping
// of the prober; tests drive sockets inside lab hosts in-process with
// Host.Do and friends.

// probePort is where the responder listens on both server addresses; it
// also listens on probePort+1 so that port-dependent filtering can be
// checked.
const probePort = 3478

type responder struct {
	t   testing.TB
	udp map[netip.AddrPort]*net.UDPConn

	// received counts datagrams per listening address, for the loss test.
	mu       sync.Mutex
	received map[netip.AddrPort]int
}

// newResponder starts UDP responders on every server address at probePort
// and probePort+1 and a TCP responder on the first address at probePort.
func newResponder(t testing.TB, srv *natlab.Host) *responder {
	t.Helper()
	r := &responder{t: t, udp: map[netip.AddrPort]*net.UDPConn{}, received: map[netip.AddrPort]int{}}
	var wg sync.WaitGroup
	for _, a := range srv.Addrs() {
		for _, port := range []uint16{probePort, probePort + 1} {
			ap := netip.AddrPortFrom(a, port)
			pc, err := srv.ListenPacket("udp4", ap.String())
			if err != nil {
				t.Fatalf("responder: %v", err)
			}
			c := pc.(*net.UDPConn)
			r.udp[ap] = c
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.serveUDP(ap, c)
			}()
		}
	}
	ln, err := srv.Listen("tcp4", netip.AddrPortFrom(srv.Addr(), probePort).String())
	if err != nil {
		t.Fatalf("responder: %v", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for _, c := range r.udp {
			c.Close()
		}
		wg.Wait()
	})
	return r
}

// serveUDP answers "?NONCE" with "NONCE SRC" and counts every datagram.
func (r *responder) serveUDP(ap netip.AddrPort, c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.received[ap]++
		r.mu.Unlock()
		if n > 0 && buf[0] == '?' {
			_, _ = c.WriteToUDPAddrPort(fmt.Appendf(nil, "%s %s", buf[1:n], from), from)
		}
	}
}

func (r *responder) count(ap netip.AddrPort) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.received[ap]
}

// sendFrom sends an unsolicited datagram from the responder socket at
// from to dst.
func (r *responder) sendFrom(from, dst netip.AddrPort) {
	r.t.Helper()
	if _, err := r.udp[from].WriteToUDPAddrPort([]byte("unsolicited"), dst); err != nil {
		r.t.Fatalf("send from %s to %s: %v", from, dst, err)
	}
}

// server returns the responder address on server address i at probePort+port.
func server(lab *natlab.Lab, i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(lab.Server().Addrs()[i], probePort+port)
}

// udpOn opens a UDP socket on host h (port 0: any).
func udpOn(t testing.TB, h *natlab.Host, port int) *net.UDPConn {
	t.Helper()
	pc, err := h.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatalf("udp on %s: %v", h, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

func localPort(c *net.UDPConn) uint16 {
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
}

// observe asks the responder at dst which source address c's datagrams
// come from, retrying a few times in case of loss.
func observe(c *net.UDPConn, dst netip.AddrPort) (netip.AddrPort, error) {
	var nb [6]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	buf := make([]byte, 1500)
	for range 5 {
		if _, err := c.WriteToUDPAddrPort([]byte("?"+nonce), dst); err != nil {
			return netip.AddrPort{}, fmt.Errorf("observe via %s: %w", dst, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // timeout: send again
			}
			f := strings.Fields(string(buf[:n]))
			if len(f) == 2 && f[0] == nonce {
				return netip.ParseAddrPort(f[1])
			}
		}
	}
	return netip.AddrPort{}, fmt.Errorf("observe via %s: no answer", dst)
}

func mustObserve(t testing.TB, c *net.UDPConn, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	m, err := observe(c, dst)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// expectNothing fails the test if c receives anything within d, other than
// a late answer to one of our own observe probes (observe resends after a
// second, so on a loaded machine a duplicate answer can still be in flight).
func expectNothing(t testing.TB, c *net.UDPConn, d time.Duration, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err == nil {
			if isObserveAnswer(buf[:n]) {
				continue
			}
			t.Fatalf("%s: received %q from %s, want nothing", what, buf[:n], from)
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
}

// isObserveAnswer reports whether b is a responder's "nonce ip:port" answer.
func isObserveAnswer(b []byte) bool {
	f := strings.Fields(string(b))
	if len(f) != 2 || len(f[0]) != 12 {
		return false
	}
	if _, err := hex.DecodeString(f[0]); err != nil {
		return false
	}
	_, err := netip.ParseAddrPort(f[1])
	return err == nil
}

// expectFrom fails the test unless c receives a datagram from src within d.
func expectFrom(t testing.TB, c *net.UDPConn, src netip.AddrPort, d time.Duration, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1500)
	for {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s: nothing from %s: %v", what, src, err)
		}
		if from == src {
			return
		}
	}
}

// observeTCP connects from h (local port lport, 0 for any) to the TCP
// responder and returns the source address it saw.
func observeTCP(ctx context.Context, h *natlab.Host, lport int, dst netip.AddrPort) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{Port: lport}}
	c, err := h.DialContext(ctx, d, "tcp4", dst.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("observe tcp via %s: %w", dst, err)
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}

// dialResult classifies an unsolicited TCP connection attempt.
type dialResult string

const (
	dialSilence  dialResult = "silence"
	dialRefused  dialResult = "refused"
	dialAccepted dialResult = "accepted"
)

// dialUnsolicited tries a TCP connection from h to dst and says whether the
// SYN was met with silence (no answer within wait), a RST, or a SYN-ACK.
func dialUnsolicited(t testing.TB, h *natlab.Host, dst netip.AddrPort, wait time.Duration) dialResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := h.DialContext(ctx, nil, "tcp4", dst.String())
	switch {
	case err == nil:
		c.Close()
		return dialAccepted
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return dialSilence
	case isRefused(err):
		return dialRefused
	}
	t.Fatalf("unsolicited dial %s: %v", dst, err)
	return ""
}

// newFlows opens n fresh sockets on h, one after another with gap between
// them, and returns the public port of each one's first flow to dst.
func newFlows(t testing.TB, h *natlab.Host, dst netip.AddrPort, n int, gap time.Duration) []uint16 {
	t.Helper()
	ports := make([]uint16, 0, n)
	for i := range n {
		if i > 0 {
			time.Sleep(gap)
		}
		c := udpOn(t, h, 0)
		ports = append(ports, mustObserve(t, c, dst).Port())
		c.Close()
	}
	return ports
}

// deltas returns the differences between consecutive ports, modulo the
// symseq port range so that a wrap counts as +1.
func deltas(ports []uint16) []int {
	var d []int
	for i := 1; i < len(ports); i++ {
		d = append(d, (int(ports[i])-int(ports[i-1])+natlab.SeqPortCount)%natlab.SeqPortCount)
	}
	return d
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
