package rendezvous

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// FallbackPort is where a daemon looks for the server when its configured
// port cannot be reached: networks that let anything out let out HTTPS.
const FallbackPort = "443"

// DefaultFallbackDelay is the configured address's head start before the
// fallback is dialled too, as Happy Eyeballs (RFC 8305) gives IPv6: long
// enough that a reachable port answers first on any sane path, short
// enough that a network that drops SYNs to it costs little.
const DefaultFallbackDelay = 250 * time.Millisecond

// Control connections look like HTTPS to a middlebox that reads their
// ClientHello (the only part of a TLS 1.3 handshake it can read): the
// client offers the ALPN protocols a browser offers, and the server
// selects HTTP/1.1 (its choice travels encrypted). Clients that offer no
// ALPN, as older daemons, are served as before.
var (
	clientALPN = []string{"h2", "http/1.1"}
	serverALPN = []string{"http/1.1"}
)

// looksLikeHTTPS makes a control connection's ClientHello a browser's:
// ALPN as above, and the server's name as SNI where the address has one
// (the key is pinned, so the name is not checked; "warren" otherwise).
func looksLikeHTTPS(conf *tls.Config, address string) {
	conf.NextProtos = clientALPN
	if host, _, err := net.SplitHostPort(address); err == nil && net.ParseIP(host) == nil && host != "" {
		conf.ServerName = host
	}
}

// Route is how a connection to the rendezvous server went.
type Route struct {
	// Asked is the server address the dial was for.
	Asked string
	// Addr is the server address the connection reached: Asked, or its
	// fallback.
	Addr string
	// Fallback is true when Addr is the fallback address.
	Fallback bool
	// Proxy is the HTTP proxy the connection went through (host:port),
	// or "" for none.
	Proxy string
}

// Restriction is what the route says of this network, as NATReport's
// Restricted spells it: a route through a proxy or to the fallback port
// means the network lets out little more than HTTPS, so no direct path
// to a peer is to be expected.
func (r Route) Restriction() string {
	switch {
	case r.Proxy != "":
		return RestrictedProxy
	case r.Fallback:
		return RestrictedTCP443
	}
	return ""
}

// Dialer opens TCP connections to the rendezvous server for the control
// connection and for relays, so that both go the same way: to the
// configured address, or to the fallback when it cannot be reached, and
// through an HTTP proxy (CONNECT) when one is set.
type Dialer struct {
	// Address is the server's configured host:port: what DialLikeLast
	// dials before any Dial. Required.
	Address string
	// Fallback is tried when the address asked for cannot be reached
	// (refused, timeout) within FallbackDelay. Default: that address's
	// host on FallbackPort; the same as the address turns the fallback
	// off.
	Fallback string
	// Proxy, if set, is an http:// proxy URL that every connection goes
	// through with CONNECT; its userinfo, if any, is sent as Basic auth.
	Proxy *url.URL
	// TCP opens a plain TCP connection (to a proxy, or for DialLikeLast
	// to the server). Default: a net.Dialer announcing a small MSS, as
	// relay and control connections do (punch.ClampMSS).
	TCP func(ctx context.Context, addr string) (net.Conn, error)
	// FallbackDelay is Address's head start. Default
	// DefaultFallbackDelay.
	FallbackDelay time.Duration

	// mu guards last.
	mu   sync.Mutex
	last Route // the route of the last Dial that succeeded
}

// ParseProxy parses an HTTP proxy URL as HTTPS_PROXY and config spell it:
// http://[user:password@]host:port, the scheme optional.
func ParseProxy(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("proxy %q: %w", redactURL(s), err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("proxy %s: scheme %q: only http:// proxies are supported (CONNECT over plain HTTP)", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("proxy %s: want http://host:port", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("proxy %s: want http://host:port, without a path", u.Redacted())
	}
	return u, nil
}

// redactURL hides a password in a URL that did not parse.
func redactURL(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

// fallback returns addr's fallback address, or "" if there is none.
func (d *Dialer) fallback(addr string) string {
	fb := d.Fallback
	if fb == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return ""
		}
		fb = net.JoinHostPort(host, FallbackPort)
	}
	if fb == addr {
		return ""
	}
	return fb
}

func (d *Dialer) plain(ctx context.Context, addr string) (net.Conn, error) {
	if d.TCP != nil {
		return d.TCP(ctx, addr)
	}
	dl := net.Dialer{Control: punch.ClampMSS}
	return dl.DialContext(ctx, "tcp", addr)
}

// Dial connects to the server at addr for a control connection: addr
// first, its fallback once addr failed or FallbackDelay passed, whichever
// answers first wins. direct opens the TCP connection when no proxy is
// set (the daemon dials from its punch port); nil means TCP. The route it
// took is what DialLikeLast follows.
func (d *Dialer) Dial(ctx context.Context, addr string, direct func(ctx context.Context, addr string) (net.Conn, error)) (net.Conn, Route, error) {
	targets := []string{addr}
	if fb := d.fallback(addr); fb != "" {
		targets = append(targets, fb)
	}
	c, r, err := d.race(ctx, addr, targets, direct)
	if err == nil {
		d.mu.Lock()
		d.last = r
		d.mu.Unlock()
	}
	return c, r, err
}

// DialLikeLast connects to the server at addr ("" for the one the last
// Dial was for, or Address before any) the way the last successful Dial
// went (for a relay, which must go where the control connection could):
// its fallback first if that Dial needed one, then the other way; through
// the proxy if one is set. It does not change the route Dial recorded.
func (d *Dialer) DialLikeLast(ctx context.Context, addr string) (net.Conn, Route, error) {
	d.mu.Lock()
	last := d.last
	d.mu.Unlock()
	addr = cmp.Or(addr, last.Asked, d.Address)
	targets := []string{addr}
	if fb := d.fallback(addr); fb != "" {
		if last.Fallback {
			targets = []string{fb, addr}
		} else {
			targets = append(targets, fb)
		}
	}
	return d.race(ctx, addr, targets, nil)
}

// LastRoute returns the route of the last successful Dial (zero before
// one).
func (d *Dialer) LastRoute() Route {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// race dials targets in order, each after the one before failed or after
// FallbackDelay, and returns the first connection made; it closes the
// others and returns only once every attempt has.
func (d *Dialer) race(ctx context.Context, asked string, targets []string, direct func(ctx context.Context, addr string) (net.Conn, error)) (net.Conn, Route, error) {
	if direct == nil || d.Proxy != nil {
		direct = d.plain
	}
	open := func(ctx context.Context, addr string) (net.Conn, Route, error) {
		r := Route{Asked: asked, Addr: addr, Fallback: addr != asked}
		if d.Proxy == nil {
			c, err := direct(ctx, addr)
			return c, r, err
		}
		r.Proxy = d.Proxy.Host
		c, err := d.viaProxy(ctx, addr)
		return c, r, err
	}
	delay := d.FallbackDelay
	if delay <= 0 {
		delay = DefaultFallbackDelay
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		r   Route
		err error
	}
	results := make(chan result, len(targets))
	next, pending := 0, 0
	startNext := func() {
		if next == len(targets) {
			return
		}
		addr := targets[next]
		next++
		pending++
		go func() { // owned by race, which waits for its result
			c, r, err := open(ctx, addr)
			results <- result{c, r, err}
		}()
	}
	startNext()
	headStart := time.NewTimer(delay)
	defer headStart.Stop()
	var errs []error
	var won result
	for pending > 0 && won.c == nil {
		select {
		case res := <-results:
			pending--
			if res.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", describeRoute(res.r), res.err))
				startNext()
				continue
			}
			won = res
		case <-headStart.C:
			startNext()
		}
	}
	cancel()
	for ; pending > 0; pending-- {
		if res := <-results; res.c != nil {
			res.c.Close()
		}
	}
	if won.c == nil {
		return nil, Route{}, errors.Join(errs...)
	}
	return won.c, won.r, nil
}

// describeRoute names a route for errors and logs.
func describeRoute(r Route) string {
	s := r.Addr
	if r.Proxy != "" {
		s += " via proxy " + r.Proxy
	}
	return s
}

// String names the route for logs and status.
func (r Route) String() string {
	s := "direct"
	if r.Fallback {
		s = "fallback"
	}
	return s + " " + describeRoute(r)
}

// proxyHeaderLimit bounds the proxy's answer to CONNECT: a status line
// and a few headers.
const proxyHeaderLimit = 8 << 10

// viaProxy opens a tunnel to addr through the HTTP proxy with CONNECT
// (RFC 9110 section 9.3.6).
func (d *Dialer) viaProxy(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.plain(ctx, d.Proxy.Host)
	if err != nil {
		return nil, fmt.Errorf("dial proxy: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var req strings.Builder
	fmt.Fprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", addr, addr)
	if u := d.Proxy.User; u != nil {
		pw, _ := u.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pw))
		fmt.Fprintf(&req, "Proxy-Authorization: Basic %s\r\n", cred)
	}
	req.WriteString("\r\n")
	if _, err := c.Write([]byte(req.String())); err != nil {
		c.Close()
		return nil, fmt.Errorf("proxy CONNECT: %w", err)
	}
	br := bufio.NewReaderSize(c, 4096)
	status, err := readProxyAnswer(br)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("proxy CONNECT: %w", ctx.Err())
		}
		return nil, fmt.Errorf("proxy CONNECT answer: %w", err)
	}
	if !strings.HasPrefix(status, "2") {
		c.Close()
		return nil, fmt.Errorf("proxy refused CONNECT %s: %s", addr, status)
	}
	c.SetDeadline(time.Time{})
	pc := &proxiedConn{Conn: c, r: br, remote: c.RemoteAddr()}
	// The server's address, not the proxy's: the client resolves the
	// UDP endpoints it is told ("the address you dialled") against it.
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		pc.remote = net.TCPAddrFromAddrPort(ap)
	}
	return pc, nil
}

// readProxyAnswer reads the proxy's answer to CONNECT up to its blank
// line, and no further (what follows belongs to the tunnel), and returns
// its status code and reason ("200 Connection established").
func readProxyAnswer(br *bufio.Reader) (string, error) {
	var status string
	for read := 0; ; {
		line, err := br.ReadSlice('\n')
		read += len(line)
		if read > proxyHeaderLimit || errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("answer too long")
		}
		if err != nil {
			return "", err
		}
		text := strings.TrimRight(string(line), "\r\n")
		if status == "" {
			proto, rest, ok := strings.Cut(text, " ")
			if !ok || !strings.HasPrefix(proto, "HTTP/1.") || len(rest) < 3 {
				return "", fmt.Errorf("malformed status line %q", shortText(text))
			}
			status = rest
			continue
		}
		if text == "" {
			return status, nil
		}
	}
}

// shortText cuts what a stranger sent for an error message.
func shortText(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// proxiedConn is a tunnel through a proxy: reads start with what the
// proxy's answer left buffered.
type proxiedConn struct {
	net.Conn
	r      *bufio.Reader
	remote net.Addr
}

func (c *proxiedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// RemoteAddr is the server's address where it was dialled by IP, else the
// proxy's.
func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }
