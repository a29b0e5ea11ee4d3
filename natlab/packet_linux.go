//go:build linux

package natlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packetSock is an AF_PACKET socket bound to one device, reading and
// writing whole Ethernet frames in batches (recvmmsg, sendmmsg). It goes
// through Go's poller, so Close interrupts a blocked read.
type packetSock struct {
	f  *os.File
	rc syscall.RawConn
}

// mmsghdr is struct mmsghdr of recvmmsg(2): one message and its length.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// batchLen is how many frames one system call moves at most.
const batchLen = 64

// sockBufBytes is each socket's buffer: a few milliseconds of frames at
// the rates the emulator carries, so that a scheduling hiccup does not
// drop them.
const sockBufBytes = 8 << 20

func openPacketSock(dev string) (*packetSock, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return nil, err
	}
	proto := htons(unix.ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", dev, err)
	}
	opts := []struct{ level, name, value int }{
		// Its own sends would otherwise come back to it as
		// PACKET_OUTGOING frames.
		{unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1},
		// veth has no queue worth going through.
		{unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1},
		{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBufBytes},
		{unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBufBytes},
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.value); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("packet socket on %s: option %d: %w", dev, o.name, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %s: bind: %w", dev, err)
	}
	f := os.NewFile(uintptr(fd), dev)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &packetSock{f: f, rc: rc}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *packetSock) Close() error { return s.f.Close() }

// drops returns how many frames the kernel dropped because the socket's
// buffer was full since the last call (reading the counter resets it).
func (s *packetSock) drops() int64 {
	var n int64
	_ = s.rc.Control(func(fd uintptr) {
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			n = int64(st.Drops)
		}
	})
	return n
}

// batch is the scratch state of one goroutine's batched calls.
type batch struct {
	hdrs [batchLen]mmsghdr
	iovs [batchLen]unix.Iovec
}

// recv reads up to len(frames) frames (at most batchLen), blocking until
// at least one arrives, and sets each one's length. Truncated frames
// (larger than frameCap, which offloads being off rules out) are dropped.
func (s *packetSock) recv(b *batch, frames []*frame) (int, error) {
	n := min(len(frames), batchLen)
	for i := 0; i < n; i++ {
		b.iovs[i].Base = &frames[i].buf[0]
		b.iovs[i].SetLen(len(frames[i].buf))
		b.hdrs[i] = mmsghdr{}
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
	}
	var got int
	var serr error
	err := s.rc.Read(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		if e != 0 {
			serr = e
		}
		got = int(r)
		return true
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	kept := 0
	for i := 0; i < got; i++ {
		if b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
			continue
		}
		frames[i].n = int(b.hdrs[i].n)
		frames[kept], frames[i] = frames[i], frames[kept]
		kept++
	}
	return kept, nil
}

// send writes frames, in order, in as few calls as it can. A frame the
// kernel refuses (ENOBUFS when the far side is slow, or the device being
// down) is lost, as on a wire; only a closed socket is an error.
func (s *packetSock) send(b *batch, frames [][]byte) error {
	for len(frames) > 0 {
		n := min(len(frames), batchLen)
		for i := 0; i < n; i++ {
			b.iovs[i].Base = &frames[i][0]
			b.iovs[i].SetLen(len(frames[i]))
			b.hdrs[i] = mmsghdr{}
			b.hdrs[i].hdr.Iov = &b.iovs[i]
			b.hdrs[i].hdr.SetIovlen(1)
		}
		var sent int
		err := s.rc.Write(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
			switch {
			case e == unix.EAGAIN:
				return false
			case e != 0:
				sent = 1 // skip the frame that failed
			default:
				sent = int(r)
			}
			return true
		})
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return err
			}
			sent = n
		}
		frames = frames[max(sent, 1):]
	}
	return nil
}
