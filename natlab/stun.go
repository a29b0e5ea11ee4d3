package natlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// A minimal RFC 3489/5780 STUN responder on the lab's server, for
// miniupnpd: miniupnpd 2.3 refuses to map anything while its WAN address
// is a reserved one (the lab's internet is a documentation prefix),
// unless a STUN test shows the router to be unfiltered: it sends four
// Binding Requests (no change, change port, change address, both) and
// wants all four answered, from where asked, with its own address and
// port. This responder answers exactly that.
const (
	stunHeaderLen     = 20
	stunBindRequest   = 0x0001
	stunBindSuccess   = 0x0101
	stunMagic         = 0x2112A442
	stunAttrMapped    = 0x0001
	stunAttrChangeReq = 0x0003
	stunAttrXORMapped = 0x0020
	stunChangeIP      = 0x4
	stunChangePort    = 0x2
)

// stunServer answers on the server's two addresses, each on ports port
// and port+1, until ctx ends.
type stunServer struct {
	conns [2][2]net.PacketConn // [address][port]
}

func startSTUN(ctx context.Context, srv *Host, port uint16) (*stunServer, error) {
	s := &stunServer{}
	addrs := srv.Addrs()
	for i := range 2 {
		for j := range 2 {
			c, err := srv.ListenPacket("udp4", netip.AddrPortFrom(addrs[i], port+uint16(j)).String())
			if err != nil {
				s.close()
				return nil, fmt.Errorf("stun responder: %w", err)
			}
			s.conns[i][j] = c
		}
	}
	context.AfterFunc(ctx, s.close)
	for i := range 2 {
		for j := range 2 {
			go s.serve(i, j) // ends when close closes its socket
		}
	}
	return s, nil
}

func (s *stunServer) close() {
	for i := range 2 {
		for j := range 2 {
			if c := s.conns[i][j]; c != nil {
				_ = c.Close()
			}
		}
	}
}

func (s *stunServer) serve(i, j int) {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conns[i][j].ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		peer := from.(*net.UDPAddr).AddrPort()
		resp, change, ok := stunAnswer(buf[:n], peer)
		if !ok {
			continue // not a Binding Request: ignored
		}
		ri, rj := i, j // answer from the other address and/or port if asked
		if change&stunChangeIP != 0 {
			ri ^= 1
		}
		if change&stunChangePort != 0 {
			rj ^= 1
		}
		_, _ = s.conns[ri][rj].WriteTo(resp, from)
	}
}

// stunAnswer returns the success response to Binding Request req from
// peer and the request's CHANGE-REQUEST flags; ok is false for anything
// else.
func stunAnswer(req []byte, peer netip.AddrPort) (resp []byte, change uint32, ok bool) {
	if len(req) < stunHeaderLen || binary.BigEndian.Uint16(req) != stunBindRequest ||
		int(binary.BigEndian.Uint16(req[2:]))+stunHeaderLen > len(req) || !peer.Addr().Unmap().Is4() {
		return nil, 0, false
	}
	attrs := req[stunHeaderLen : stunHeaderLen+int(binary.BigEndian.Uint16(req[2:]))]
	for len(attrs) >= 4 {
		typ, n := binary.BigEndian.Uint16(attrs), int(binary.BigEndian.Uint16(attrs[2:]))
		if 4+n > len(attrs) {
			return nil, 0, false
		}
		if typ == stunAttrChangeReq && n == 4 {
			change = binary.BigEndian.Uint32(attrs[4:])
		}
		next := 4 + (n+3)&^3 // attributes are padded to 4 bytes
		if next > len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	a := peer.Addr().Unmap().As4()
	resp = make([]byte, stunHeaderLen, stunHeaderLen+24)
	binary.BigEndian.PutUint16(resp, stunBindSuccess)
	binary.BigEndian.PutUint16(resp[2:], 24)
	copy(resp[4:20], req[4:20]) // magic cookie and transaction id
	resp = binary.BigEndian.AppendUint16(resp, stunAttrMapped)
	resp = binary.BigEndian.AppendUint16(resp, 8)
	resp = append(resp, 0, 1)
	resp = binary.BigEndian.AppendUint16(resp, peer.Port())
	resp = append(resp, a[:]...)
	resp = binary.BigEndian.AppendUint16(resp, stunAttrXORMapped)
	resp = binary.BigEndian.AppendUint16(resp, 8)
	resp = append(resp, 0, 1)
	resp = binary.BigEndian.AppendUint16(resp, peer.Port()^uint16(stunMagic>>16))
	resp = binary.BigEndian.AppendUint32(resp, binary.BigEndian.Uint32(a[:])^stunMagic)
	return resp, change, true
}
