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
	"golang.org/x/time/rate"

	"github.com/warren-p2p/warren/identity"
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

// issuedSession is a punch session the server started, for which its two
// peers (by side) may open a relay.
type issuedSession struct {
	at   time.Time
	keys [2]identity.PublicKey
}

// peerLimiter is one peer's relay rate, shared by its relays.
type peerLimiter struct {
	lim   *rate.Limiter
	users int
}

// relayBuf is the relay's copy buffer, and so the largest burst a limiter
// must allow.
const relayBuf = 64 << 10

// limiter returns key's rate limiter (nil without a cap) and a function to
// release it when the relay ends.
func (s *Server) limiter(key identity.PublicKey) (*rate.Limiter, func()) {
	if s.cfg.RelayRate <= 0 {
		return nil, func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pl := s.limiters[key]
	if pl == nil {
		pl = &peerLimiter{lim: rate.NewLimiter(rate.Limit(s.cfg.RelayRate), max(int(s.cfg.RelayRate), relayBuf))}
		s.limiters[key] = pl
	}
	pl.users++
	return pl.lim, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if pl.users--; pl.users == 0 {
			delete(s.limiters, key)
		}
	}
}

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
	key  identity.PublicKey // whose bytes it carries, for the rate limit
	done chan struct{}
}

// serveRelay handles one relay connection whose 21-byte header was read.
func (s *Server) serveRelay(ctx context.Context, raw net.Conn, r io.Reader, id punch.SessionID, side byte) {
	log := s.cfg.Log.WithFields(logrus.Fields{"remote": raw.RemoteAddr().String(), "session": id.String()[:8]})
	// Refusals are logged one by one at debug level only, and summed up
	// per source: anyone can send a relay header.
	refuse := func(reason, text string) {
		log.Debug("relay refused: " + text)
		s.refusals.note(sourceOfAddr(raw.RemoteAddr()), reason)
	}
	if !s.cfg.Relay {
		refuse(refusedRelayOff, "relaying is off")
		return
	}
	s.mu.Lock()
	issued, ok := s.issued[id]
	s.mu.Unlock()
	if !ok || time.Since(issued.at) > s.cfg.RelayWindow {
		refuse(refusedRelaySession, "not a live punch session")
		return
	}
	me := &relayHalf{conn: raw, r: r, side: side, key: issued.keys[side], done: make(chan struct{})}
	h := &s.relays
	h.mu.Lock()
	other := h.waiting[id]
	switch {
	case other != nil && other.side == side:
		h.mu.Unlock()
		refuse(refusedRelaySession, "that side is already waiting")
		return
	case other != nil && h.active >= s.cfg.MaxRelays:
		delete(h.waiting, id)
		h.mu.Unlock()
		refuse(refusedRelays, "at the relay cap")
		// The waiting half is no one's now: let its goroutine end, which
		// closes its connection and gives back its slots.
		close(other.done)
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
		n1, n2 := s.pipe(ctx, other, me)
		log.WithFields(logrus.Fields{"bytes_a": n1, "bytes_b": n2}).Info("relay closed")
		return
	}
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
func (s *Server) pipe(ctx context.Context, a, b *relayHalf) (int64, int64) {
	stop := context.AfterFunc(ctx, func() { a.conn.Close(); b.conn.Close() })
	defer stop()
	for _, c := range []net.Conn{a.conn, b.conn} {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{relayPaired}); err != nil {
			a.conn.Close()
			b.conn.Close()
			return 0, 0
		}
		c.SetWriteDeadline(time.Time{})
	}
	var wg sync.WaitGroup
	var na, nb int64
	wg.Add(2)
	go func() { defer wg.Done(); na = s.copyIdle(ctx, b.conn, a) }()
	go func() { defer wg.Done(); nb = s.copyIdle(ctx, a.conn, b) }()
	wg.Wait()
	a.conn.Close()
	b.conn.Close()
	return na, nb
}

// copyIdle copies what src's peer sends to dst, at most at that peer's
// rate, half-closing dst at the end, and gives up after RelayIdle without
// data.
func (s *Server) copyIdle(ctx context.Context, dst net.Conn, src *relayHalf) int64 {
	lim, release := s.limiter(src.key)
	defer release()
	buf := make([]byte, relayBuf)
	var n int64
	for {
		src.conn.SetReadDeadline(time.Now().Add(s.cfg.RelayIdle))
		m, err := src.r.Read(buf)
		if m > 0 {
			if lim != nil && lim.WaitN(ctx, m) != nil {
				src.conn.Close()
				return n
			}
			dst.SetWriteDeadline(time.Now().Add(s.cfg.RelayIdle))
			if _, werr := dst.Write(buf[:m]); werr != nil {
				src.conn.Close()
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
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(header(relayMagic, session, side)); err != nil {
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

// header returns the 21-byte header of a probe or relay connection.
func header(magic string, id punch.SessionID, side int) []byte {
	return append(append([]byte(magic), id[:]...), byte(side))
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
