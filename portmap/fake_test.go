package portmap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Replies a NAT-PMP/PCP router sends, for the fake router and the tests.

func pmpAddressReply(result uint16, ip netip.Addr) []byte {
	b := make([]byte, pmpAddressLen)
	b[0], b[1] = pmpVersion, pmpOpAddress|pmpReplyBit
	binary.BigEndian.PutUint16(b[2:], result)
	a := ip.As4()
	copy(b[8:], a[:])
	return b
}

func pmpMapReply(op byte, result, internal, external uint16, life uint32) []byte {
	b := make([]byte, pmpMapLen)
	b[0], b[1] = pmpVersion, op|pmpReplyBit
	binary.BigEndian.PutUint16(b[2:], result)
	binary.BigEndian.PutUint16(b[8:], internal)
	binary.BigEndian.PutUint16(b[10:], external)
	binary.BigEndian.PutUint32(b[12:], life)
	return b
}

// pcpReply answers request req (a MAP or ANNOUNCE) with result, assigning
// ext for a MAP.
func pcpReply(req []byte, result byte, life uint32, ext netip.AddrPort) []byte {
	n := pcpHeaderLen
	if req[1] == pcpOpMap {
		n = pcpMapLen
	}
	b := make([]byte, n)
	b[0], b[1], b[3] = pcpVersion, req[1]|pcpReplyBit, result
	binary.BigEndian.PutUint32(b[4:], life)
	if n == pcpMapLen {
		copy(b[pcpHeaderLen:], req[pcpHeaderLen:pcpHeaderLen+20]) // nonce, protocol, internal port
		binary.BigEndian.PutUint16(b[pcpHeaderLen+18:], ext.Port())
		putAddr16(b[pcpHeaderLen+20:], ext.Addr())
	}
	return b
}

// fakeRouter is a NAT-PMP and PCP server on loopback. It assigns external
// port internal+offset and keeps a table of live mappings.
type fakeRouter struct {
	pc net.PacketConn
	ip netip.Addr // its "public" address

	mu       sync.Mutex
	pmp, pcp bool                   // which protocols it answers
	delay    map[byte]time.Duration // per version byte: wait before answering
	refuse   map[byte]byte          // per version: result code for MAP requests
	life     uint32                 // lifetime granted, seconds
	offset   uint16                 // external = internal + offset
	hostile  bool                   // send a forged answer before each real one
	silent   bool                   // answer nothing
	mappings map[string]uint16      // "udp/1234" -> external port
	requests int                    // MAP requests seen (renewals included)
}

func newFakeRouter(t *testing.T) *fakeRouter {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRouter{pc: pc, ip: netip.MustParseAddr("198.51.100.7"), pmp: true, pcp: true,
		delay: map[byte]time.Duration{}, refuse: map[byte]byte{}, life: 3600, offset: 10000,
		mappings: map[string]uint16{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.serve()
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return f
}

func (f *fakeRouter) port() uint16 { return uint16(f.pc.LocalAddr().(*net.UDPAddr).Port) }

// client returns a Client whose router is f, with UPnP's SSDP aimed at a
// port nobody answers.
func (f *fakeRouter) client(t *testing.T, cfg Config) *Client {
	t.Helper()
	cfg.Gateway = netip.MustParseAddr("127.0.0.1")
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.pmpPort, c.ssdpPort = f.port(), 9 // discard: nothing answers
	return c
}

func (f *fakeRouter) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := f.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		req := append([]byte(nil), buf[:n]...)
		f.mu.Lock()
		replies, delay := f.answerLocked(req)
		f.mu.Unlock()
		go func() { // answers may be delayed; the socket's Close ends them
			time.Sleep(delay)
			for _, r := range replies {
				_, _ = f.pc.WriteTo(r, from)
			}
		}()
	}
}

func (f *fakeRouter) answerLocked(req []byte) ([][]byte, time.Duration) {
	if f.silent || len(req) < 2 {
		return nil, 0
	}
	v := req[0]
	switch {
	case v == pmpVersion && f.pmp:
		return f.pmpLocked(req), f.delay[v]
	case v == pcpVersion && f.pcp:
		return f.pcpLocked(req), f.delay[v]
	case v == pcpVersion && f.pmp: // a NAT-PMP-only router (RFC 6887 section 9)
		return [][]byte{pmpMapReply(req[1], 1, 0, 0, 0)[:8]}, 0
	}
	return nil, 0
}

func (f *fakeRouter) pmpLocked(req []byte) [][]byte {
	if req[1] == pmpOpAddress {
		return [][]byte{pmpAddressReply(0, f.ip)}
	}
	if len(req) < pmpMapRequestSz {
		return nil
	}
	internal, life := binary.BigEndian.Uint16(req[4:]), binary.BigEndian.Uint32(req[8:])
	key := map[byte]string{pmpOpMapUDP: "udp", pmpOpMapTCP: "tcp"}[req[1]] + "/" + strconv.Itoa(int(internal))
	if code := f.refuse[pmpVersion]; code != 0 {
		return [][]byte{pmpMapReply(req[1], uint16(code), internal, 0, 0)}
	}
	f.requests++
	if life == 0 {
		delete(f.mappings, key)
		return [][]byte{pmpMapReply(req[1], 0, internal, 0, 0)}
	}
	f.mappings[key] = internal + f.offset
	var out [][]byte
	if f.hostile {
		out = append(out, pmpMapReply(req[1], 0, internal+1, 1, f.life)) // another port's answer
	}
	return append(out, pmpMapReply(req[1], 0, internal, internal+f.offset, f.life))
}

func (f *fakeRouter) pcpLocked(req []byte) [][]byte {
	if req[1] == pcpOpAnnounce {
		return [][]byte{pcpReply(req, 0, 0, netip.AddrPort{})}
	}
	if len(req) < pcpMapLen {
		return nil
	}
	d := req[pcpHeaderLen:]
	internal, life := binary.BigEndian.Uint16(d[16:]), binary.BigEndian.Uint32(req[4:])
	key := map[byte]string{protoUDP: "udp", protoTCP: "tcp"}[d[12]] + "/" + strconv.Itoa(int(internal))
	if code := f.refuse[pcpVersion]; code != 0 {
		return [][]byte{pcpReply(req, code, 0, netip.AddrPort{})}
	}
	f.requests++
	if life == 0 {
		delete(f.mappings, key)
		return [][]byte{pcpReply(req, 0, 0, netip.AddrPort{})}
	}
	f.mappings[key] = internal + f.offset
	ext := netip.AddrPortFrom(f.ip, internal+f.offset)
	var out [][]byte
	if f.hostile {
		forged := pcpReply(req, 0, f.life, netip.AddrPortFrom(f.ip, 1))
		forged[pcpHeaderLen] ^= 0xff // wrong nonce
		out = append(out, forged)
	}
	return append(out, pcpReply(req, 0, f.life, ext))
}

func (f *fakeRouter) set(fn func(f *fakeRouter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeRouter) snapshot() (map[string]uint16, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]uint16{}
	for k, v := range f.mappings {
		m[k] = v
	}
	return m, f.requests
}
