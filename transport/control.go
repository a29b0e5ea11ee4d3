package transport

import (
	"bytes"
	"encoding/binary"
)

// PrefixByte is the first byte of every datagram on a demultiplexed socket
// that is not a KCP packet. Handler prefixes must start with it, and Dial
// refuses conversation IDs whose first byte on the wire (the low byte:
// kcp-go writes conv little-endian) equals it, so the two kinds of datagram
// can never be mistaken for one another.
const PrefixByte byte = 'W'

// MakeConv returns v adjusted so that it is a valid conversation ID: if v's
// low byte is PrefixByte it flips that byte's lowest bit. The adjustment is
// deterministic, so two peers that derive the same v (say from a shared
// punch session ID) still agree on the conversation ID.
func MakeConv(v uint32) uint32 {
	if byte(v) == PrefixByte {
		v ^= 1
	}
	return v
}

// controlMagic starts transport's own control packets. It is reserved:
// Handle refuses prefixes that overlap it.
var controlMagic = []byte{PrefixByte, 'R', 'K', 1}

// Control packet types. A control packet is
//
//	controlMagic (4) | type (1) | conv (4, little-endian) [| length (8, little-endian), FIN only]
//
// and is only accepted from the stream's remote address.
const (
	ctlPing byte = 1 // "still here": refreshes the peer's idle timer
	ctlFin  byte = 2 // clean close; carries the total bytes the sender wrote
	ctlRst  byte = 3 // abort: the sender gave up on undelivered data
)

const (
	controlLen    = 4 + 1 + 4
	controlFinLen = controlLen + 8
)

func appendControl(b []byte, typ byte, conv uint32, length uint64) []byte {
	b = append(b, controlMagic...)
	b = append(b, typ)
	b = binary.LittleEndian.AppendUint32(b, conv)
	if typ == ctlFin {
		b = binary.LittleEndian.AppendUint64(b, length)
	}
	return b
}

// parseControl decodes a packet that starts with controlMagic.
func parseControl(pkt []byte) (typ byte, conv uint32, length uint64, ok bool) {
	if len(pkt) < controlLen || !bytes.HasPrefix(pkt, controlMagic) {
		return 0, 0, 0, false
	}
	typ = pkt[4]
	conv = binary.LittleEndian.Uint32(pkt[5:])
	switch typ {
	case ctlPing, ctlRst:
		return typ, conv, 0, true
	case ctlFin:
		if len(pkt) < controlFinLen {
			return 0, 0, 0, false
		}
		return typ, conv, binary.LittleEndian.Uint64(pkt[9:]), true
	}
	return 0, 0, 0, false
}
