package natlab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestUplinkMTU sends packets over a 1400-byte uplink MTU, with "fragmentation
// needed" delivered and with a black hole.
func TestUplinkMTU(t *testing.T) {
	for _, dropICMP := range []bool{false, true} {
		t.Run(fmt.Sprintf("dropICMP=%v", dropICMP), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			lab := labtest.New(t, natlab.Config{})
			p := natlab.Profile{Name: "mtu", MTU: 1400, DropICMP: dropICMP}
			site, err := lab.AddSite(ctx, "a", natlab.Cone, natlab.WithProfile(p))
			if err != nil {
				t.Fatal(err)
			}
			rc := udpOn(t, lab.Server(), 0)
			dst := netip.AddrPortFrom(lab.Server().Addr(), localPort(rc))
			df := dialUDP(t, site.Host(), dst, syscall.IP_PMTUDISC_DO)
			mapping := sendExpect(t, df, rc, 1400-28, true, "a packet that fits")
			sendExpect(t, df, rc, 1500-28, false, "an oversize packet with DF")
			time.Sleep(100 * time.Millisecond) // the ICMP error's way back
			mtu := ipMTU(t, df)
			want := 1400
			if dropICMP {
				want = 1500 // nobody told the host
			}
			if mtu != want {
				t.Errorf("host's path MTU after an oversize packet: %d, want %d", mtu, want)
			}
			checkInboundMTU(t, rc, df, mapping, dropICMP)
			if dropICMP {
				// Without DF the uplink fragments, and the server
				// reassembles.
				nodf := dialUDP(t, site.Host(), dst, syscall.IP_PMTUDISC_DONT)
				sendExpect(t, nodf, rc, 1500-28, true, "an oversize packet without DF")
			}
			checkMTUStats(t, site, dropICMP)
		})
	}
}

// checkMTUStats checks the emulator's count of what TestUplinkMTU sent.
func checkMTUStats(t *testing.T, site *natlab.Site, dropICMP bool) {
	t.Helper()
	st, err := site.UplinkStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("emulator: %+v", st)
	// Up: the host's oversize packet, and in the black hole the one
	// without DF. Down: the server's first oversize packet, and in the
	// black hole its others, which its kernel was never told to stop.
	icmp, frags := int64(1), int64(0)
	if dropICMP {
		icmp, frags = 0, 1
	}
	if st.Up.DroppedMTU != 1 || st.Up.ICMPSent != icmp || st.Up.Fragmented != frags {
		t.Errorf("up: dropped %d over the MTU, %d ICMP, %d fragmented; want 1, %d, %d",
			st.Up.DroppedMTU, st.Up.ICMPSent, st.Up.Fragmented, icmp, frags)
	}
	if st.Down.DroppedMTU < 1 || (st.Down.ICMPSent == 0) != dropICMP {
		t.Errorf("down: dropped %d over the MTU, %d ICMP", st.Down.DroppedMTU, st.Down.ICMPSent)
	}
}

// checkInboundMTU sends oversize packets from the server's socket rc to
// the host's socket df at its mapping: the host must not receive them,
// and the server's kernel must learn the MTU exactly when ICMP is
// delivered.
func checkInboundMTU(t *testing.T, rc, df *net.UDPConn, mapping netip.AddrPort, dropICMP bool) {
	t.Helper()
	setDF(t, rc)
	big := make([]byte, 1500-28)
	if _, err := rc.WriteToUDPAddrPort(big, mapping); err != nil {
		t.Fatal(err)
	}
	// The host's socket may hold the error of its own oversize packet:
	// read past it.
	_ = df.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		n, err := df.Read(make([]byte, 2048))
		if err == nil {
			t.Errorf("host received the server's oversize packet (%d bytes)", n)
		}
		if !errors.Is(err, syscall.EMSGSIZE) {
			break
		}
	}
	refused := false
	for i := 0; i < 10 && !refused; i++ {
		_, err := rc.WriteToUDPAddrPort(big, mapping)
		refused = errors.Is(err, syscall.EMSGSIZE)
		time.Sleep(30 * time.Millisecond)
	}
	if refused == dropICMP {
		t.Errorf("server's oversize packets refused by its kernel: %v, want %v (told by ICMP)", refused, !dropICMP)
	}
}

// dialUDP opens a UDP socket on h connected to dst, with path MTU
// discovery mode pmtud (IP_PMTUDISC_*).
func dialUDP(t *testing.T, h *natlab.Host, dst netip.AddrPort, pmtud int) *net.UDPConn {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, pmtud)
		})
		if err == nil {
			err = serr
		}
		return err
	}}
	c, err := h.DialContext(context.Background(), d, "udp4", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// sendExpect sends a datagram of size bytes on c and checks whether rc
// receives it whole; it returns where it came from.
func sendExpect(t *testing.T, c, rc *net.UDPConn, size int, arrives bool, what string) netip.AddrPort {
	t.Helper()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("%s: send: %v", what, err)
	}
	buf := make([]byte, 2048)
	// A packet that must arrive gets long on a loaded machine; one that
	// must not is given less, which is plenty on any machine.
	wait := 500 * time.Millisecond
	if arrives {
		wait = 3 * time.Second
	}
	_ = rc.SetReadDeadline(time.Now().Add(wait))
	n, from, err := rc.ReadFromUDPAddrPort(buf)
	switch {
	case arrives && err != nil:
		t.Errorf("%s (%d bytes): not received: %v", what, size, err)
	case arrives && !slices.Equal(buf[:n], msg):
		t.Errorf("%s: received %d bytes, not the %d sent", what, n, size)
	case !arrives && err == nil:
		t.Errorf("%s (%d bytes): received, want it dropped", what, size)
	}
	return from
}

// setDF makes c's datagrams carry Don't Fragment.
func setDF(t *testing.T, c *net.UDPConn) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
}

func ipMTU(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mtu int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		mtu, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return mtu
}
