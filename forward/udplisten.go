package forward

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Bounds on a UDP forward.
const (
	// maxUDPClients is how many client addresses one UDP forward serves
	// at once; datagrams from more are dropped.
	maxUDPClients = 1024
	// udpQueueLen is how many of a client's datagrams wait while its
	// stream is being opened; later ones are dropped, as a full socket
	// buffer would.
	udpQueueLen = 64
	// refusedHold is how long a client whose stream was refused (or
	// could not be opened) has its datagrams dropped before the next
	// try, so that a chatty client does not make a request per datagram.
	refusedHold = 5 * time.Second
)

// udpClient is one client address of a UDP forward, with its stream.
type udpClient struct {
	addr  netip.AddrPort
	queue chan []byte
}

// serveUDP reads a UDP forward's socket until ctx is done or the socket is
// closed, giving each client address a stream of its own (opened on its
// first datagram, closed after the forward's idle timeout).
func (l *Listeners) serveUDP(ctx context.Context, ln *listener) {
	stop := context.AfterFunc(ctx, ln.close)
	defer stop()
	defer ln.close()
	var mu sync.Mutex
	clients := make(map[netip.AddrPort]*udpClient)
	full := false
	buf := datagramBuf()
	for {
		n, from, err := ln.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if transientUDP(err) {
				continue
			}
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				ln.conf.Load().log.WithError(err).Warn("udp read failed; the forward stops")
			}
			return
		}
		mu.Lock()
		c := clients[from]
		if c == nil && len(clients) < maxUDPClients {
			full = false
			c = &udpClient{addr: from, queue: make(chan []byte, udpQueueLen)}
			clients[from] = c
			conf := ln.conf.Load()
			l.wg.Go(func() {
				defer l.stats.open()()
				l.handleUDPClient(ctx, conf, ln.pc, c)
				mu.Lock()
				delete(clients, from)
				mu.Unlock()
			})
		}
		mu.Unlock()
		if c == nil {
			if !full {
				full = true
				ln.conf.Load().log.WithField("clients", maxUDPClients).Warn("too many udp clients; dropping datagrams from new ones")
			}
			continue
		}
		select {
		case c.queue <- bytes.Clone(buf[:n]):
		default:
		}
	}
}

// handleUDPClient opens c's stream and carries its datagrams both ways
// until the idle timeout, the stream's end or ctx.
func (l *Listeners) handleUDPClient(ctx context.Context, conf *listenerConf, pc *net.UDPConn, c *udpClient) {
	start := time.Now()
	f := conf.fwd
	req := forwardRequest(*f)
	log := conf.log.WithFields(logrus.Fields{"client": c.addr.String(), "target": req.String()})

	s, _, err := l.dial(ctx, f.Peer, req, nil, func() *logrus.Entry { return log })
	if err != nil {
		select {
		case <-time.After(refusedHold):
		case <-ctx.Done():
		}
		return
	}
	quit := make(chan struct{})
	var r datagramResult
	r.idle = datagramPump{stream: s, closeOther: func() { close(quit) }, idle: f.IdleTimeout.Duration}.run(ctx,
		func(w *idleWatch) {
			out := datagramWriter{w: s}
			for {
				select {
				case b := <-c.queue:
					w.touch()
					if out.write(b) != nil {
						return
					}
					r.datagramsOut++
					r.out += int64(len(b))
				case <-quit:
					return
				}
			}
		},
		func(w *idleWatch) {
			eachDatagram(s, w, datagramBuf(), func(b []byte) bool {
				r.datagramsIn++
				r.in += int64(len(b))
				_, err := pc.WriteToUDPAddrPort(b, c.addr)
				return err == nil || transientUDP(err)
			})
		})
	l.stats.bytes(r.in, r.out)
	log.WithFields(r.fields()).WithFields(logrus.Fields{
		"bytes_in":  r.in,
		"bytes_out": r.out,
		"duration":  time.Since(start),
	}).Debug("udp client done")
}
