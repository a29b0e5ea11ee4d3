package rendezvous

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
)

// A relay connection is a plain TCP connection to the control port that
// opens with relayMagic + session ID (16) + side (1). The server pairs the
// two sides of a session it issued, answers each with relayPaired, and then
// copies bytes both ways. What flows is the peers' TLS: the server sees
// only ciphertext and holds no key that could forge either end.
const (
	relayMagic  = "WRR\x01"
	relayPaired = 0x01
)

// relayHub pairs relay connections.
type relayHub struct {
	// mu guards the fields below.
	mu      sync.Mutex
	waiting map[punch.SessionID]*relayHalf
	active  int
}

// relayHalf is the first side of a session to arrive, waiting for the
// other; done closes when the pair has finished.
type relayHalf struct {
	conn net.Conn
	r    io.Reader
	side byte
	done chan struct{}
}

// serveRelay handles one relay connection whose 21-byte header was read.
func (s *Server) serveRelay(ctx context.Context, raw net.Conn, r io.Reader, id punch.SessionID, side byte) {
	log := s.cfg.Log.WithFields(logrus.Fields{"remote": raw.RemoteAddr().String(), "session": id.String()[:8]})
	if !s.cfg.Relay {
		log.Info("relay refused: relaying is off")
		return
	}
	s.mu.Lock()
	issued, ok := s.issued[id]
	s.mu.Unlock()
	if !ok || time.Since(issued) > s.cfg.RelayWindow {
		log.Info("relay refused: not a live punch session")
		return
	}
	h := &s.relays
	h.mu.Lock()
	other := h.waiting[id]
	switch {
	case other != nil && other.side == side:
		h.mu.Unlock()
		log.Info("relay refused: that side is already waiting")
		return
	case other != nil && h.active >= s.cfg.MaxRelays:
		delete(h.waiting, id)
		h.mu.Unlock()
		log.Warn("relay refused: at the relay cap")
		other.conn.Close()
		return
	case other != nil:
		delete(h.waiting, id)
		h.active++
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			h.active--
			h.mu.Unlock()
			close(other.done)
		}()
		log.Info("relaying")
		n1, n2 := s.pipe(ctx, other.conn, other.r, raw, r)
		log.WithFields(logrus.Fields{"bytes_a": n1, "bytes_b": n2}).Info("relay closed")
		return
	}
	me := &relayHalf{conn: raw, r: r, side: side, done: make(chan struct{})}
	h.waiting[id] = me
	h.mu.Unlock()
	select {
	case <-me.done:
		return
	case <-time.After(s.cfg.RelayWait):
	case <-ctx.Done():
	}
	h.mu.Lock()
	waiting := h.waiting[id] == me
	if waiting {
		delete(h.waiting, id)
	}
	h.mu.Unlock()
	if !waiting {
		// The other side took us just now: the pair owns the conn.
		<-me.done
	}
}

// pipe tells both sides they are paired and copies between them until
// either side closes or stays silent for RelayIdle. It returns the bytes
// each side sent.
func (s *Server) pipe(ctx context.Context, a net.Conn, ar io.Reader, b net.Conn, br io.Reader) (int64, int64) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	for _, c := range []net.Conn{a, b} {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{relayPaired}); err != nil {
			a.Close()
			b.Close()
			return 0, 0
		}
		c.SetWriteDeadline(time.Time{})
	}
	var wg sync.WaitGroup
	var na, nb int64
	wg.Add(2)
	go func() { defer wg.Done(); na = s.copyIdle(b, a, ar) }()
	go func() { defer wg.Done(); nb = s.copyIdle(a, b, br) }()
	wg.Wait()
	a.Close()
	b.Close()
	return na, nb
}

// copyIdle copies from src (read through r) to dst, half-closing dst at
// the end, and gives up after RelayIdle without data.
func (s *Server) copyIdle(dst, src net.Conn, r io.Reader) int64 {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		src.SetReadDeadline(time.Now().Add(s.cfg.RelayIdle))
		m, err := r.Read(buf)
		if m > 0 {
			dst.SetWriteDeadline(time.Now().Add(s.cfg.RelayIdle))
			if _, werr := dst.Write(buf[:m]); werr != nil {
				src.Close()
				return n
			}
			n += int64(m)
		}
		if err != nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && errors.Is(err, io.EOF) {
				cw.CloseWrite()
			} else {
				dst.Close()
			}
			return n
		}
	}
}

// DialRelay asks the server, over conn (a fresh TCP connection to its
// control port), to relay session's traffic to the other side, and waits
// until that side has arrived too. On success conn carries the peer's
// bytes; on failure it is closed.
func DialRelay(ctx context.Context, conn net.Conn, session punch.SessionID, side int) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	req := append(append([]byte(relayMagic), session[:]...), byte(side))
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != relayPaired {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("unexpected byte %#x", b[0])
		}
		return nil, fmt.Errorf("relay not paired: %w", err)
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	return conn, nil
}

// readHeader reads the 21-byte header of a probe or relay connection.
func readHeader(br *bufio.Reader) (magic string, id punch.SessionID, side byte, ok bool) {
	var req [tcpProbeLen]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[20] > 1 {
		return "", id, 0, false
	}
	copy(id[:], req[4:20])
	return string(req[:4]), id, req[20], true
}
