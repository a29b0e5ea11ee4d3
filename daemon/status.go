package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/internal/admit"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
	"github.com/warren-p2p/warren/session"
)

// Status is what GET /status returns.
type Status struct {
	PublicKey  string `json:"public_key"`
	Rendezvous string `json:"rendezvous"` // "registered" or "connecting"
	// RendezvousError is why the daemon is not registered, while it is
	// not: the last connection's end. For a cause that retrying will not
	// fix (another daemon uses this key, the server refuses the token or
	// is not the pinned key) it says what to fix, and the daemon retries
	// only every few minutes.
	RendezvousError string     `json:"rendezvous_error,omitempty"`
	RendezvousSince *time.Time `json:"rendezvous_error_since,omitempty"`
	Observed        string     `json:"observed,omitempty"`
	// Observed6 is this daemon's IPv6 endpoint as the server saw it (its
	// IPv6 observation when it registered over IPv4): peers with IPv6
	// punch to it. Empty when the server saw none.
	Observed6 string `json:"observed6,omitempty"`
	NAT       string `json:"nat"` // "none", "cone", "symseq(+1)", "symrand", ...; "unknown" until classified
	// RendezvousRoute is how the control connection reaches the server
	// while registered: "direct ADDR", "fallback ADDR" (the configured
	// port was not reachable), either with " via proxy HOST:PORT".
	RendezvousRoute string `json:"rendezvous_route,omitempty"`
	// RendezvousNode is the name (-node) of the cluster node the daemon
	// is registered with, while registered, if the server is one node of
	// a cluster.
	RendezvousNode string `json:"rendezvous_node,omitempty"`
	// Network is why this network leaves no direct path to any peer, so
	// that links go to the relay at once ("no UDP here; TCP 443 only",
	// "only an HTTP proxy here", "no UDP here (no probe answered)");
	// absent when nothing says so.
	Network   string `json:"network,omitempty"`
	PunchPort int    `json:"punch_port"`
	// PortMapping is what the router mapped of the punch port; absent
	// with port_mapping off.
	PortMapping *PortMappingStatus `json:"port_mapping,omitempty"`
	Uptime      float64            `json:"uptime_s"`
	Peers       []PeerStatus       `json:"peers"`
	// Listeners are the SOCKS5 and forward listeners, in config order.
	Listeners []forward.ListenerInfo `json:"listeners"`
}

// PeerStatus is one configured peer's row.
type PeerStatus struct {
	Name      string     `json:"name"`
	PublicKey string     `json:"public_key"`
	State     string     `json:"state"`
	Path      string     `json:"path"`
	Remote    string     `json:"remote"`
	RTTMs     float64    `json:"rtt_ms"`
	Since     *time.Time `json:"since,omitempty"`    // link up since; for state "offline", offline since
	SetupMs   float64    `json:"setup_ms,omitempty"` // from connect request to link up
	BytesIn   int64      `json:"bytes_in"`
	BytesOut  int64      `json:"bytes_out"`
	Streams   int64      `json:"streams"` // open now, on the current link and on a relay link still draining
	Error     string     `json:"error,omitempty"`
	// PeerNAT, Strategy and Why describe the punch session that made the
	// current link: the peer's NAT as it reported it, the strategy both
	// sides chose for the pair, and for a relayed link what each direct
	// path did instead.
	PeerNAT  string `json:"peer_nat,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	Why      string `json:"why,omitempty"`
	// UDPStream is the stream a direct-udp link runs ("quic", "kcp");
	// Probe is what the punch's probe train measured of the path, and
	// Choice says why the link runs over what it does (the stream, and
	// on a lossy path the UDP link preferred to direct TCP).
	UDPStream string     `json:"udp_stream,omitempty"`
	Probe     *PathProbe `json:"probe,omitempty"`
	Choice    string     `json:"choice,omitempty"`
	// Remembered is what the path memory said, when the current link's
	// session started, of the last session between the same two networks
	// with the same strategy (state_dir's paths-KEY.json); absent if nothing.
	// A remembered relay makes the relay go first.
	Remembered *RememberedPath `json:"remembered,omitempty"`
	// Throughput is the last minutes' traffic, for the dashboard's
	// sparklines; absent until the first sample.
	Throughput *Throughput `json:"throughput,omitempty"`
}

// RememberedPath is a past session's outcome, from the path memory.
type RememberedPath struct {
	Path    string    `json:"path"`
	SetupMs float64   `json:"setup_ms"`
	At      time.Time `json:"at"`
}

// PathProbe is what a punch session's probe train measured of the path
// to the peer: pings sent and unanswered, and the smallest round trip.
type PathProbe struct {
	Sent        int     `json:"sent"`
	Lost        int     `json:"lost"`
	LossPercent float64 `json:"loss_percent"`
	RTTMs       float64 `json:"rtt_ms"`
	// Lossy is true when the path lost probes and is loss-limited
	// (transport.ChooseStream picked KCP for it); PreferUDP when it is
	// also long enough for the race to prefer the UDP link to direct TCP.
	Lossy     bool `json:"lossy"`
	PreferUDP bool `json:"prefer_udp"`
	// HeldTCPMs is how long the race held direct TCP back for the
	// measurement and the UDP link (at the end that decides).
	HeldTCPMs float64 `json:"held_tcp_ms,omitempty"`
}

// Status reports the daemon and every configured peer.
func (d *Daemon) Status() Status {
	st := Status{PublicKey: d.key.Public().String(), Rendezvous: "connecting", NAT: d.natType(), Peers: []PeerStatus{}}
	if d.acceptor != nil {
		st.PunchPort = d.acceptor.Port()
		st.Uptime = time.Since(d.started).Seconds()
	}
	select {
	case <-d.rv.Registered():
		st.Rendezvous = "registered"
		st.RendezvousRoute = d.rvDial.LastRoute().String()
		st.RendezvousNode = d.rv.Node()
	default:
		if err, since := d.rv.Err(); err != nil {
			since = since.UTC()
			st.RendezvousError, st.RendezvousSince = err.Error(), &since
		}
	}
	st.Network = rendezvous.RestrictionText(d.nat.restriction())
	if obs := d.rv.Observed(); obs.IsValid() {
		st.Observed = obs.String()
	}
	if obs := d.rv.Observed6(); obs.IsValid() && obs.String() != st.Observed {
		st.Observed6 = obs.String()
	}
	st.PortMapping = d.ports.status()
	for _, p := range d.peerList() {
		ps := p.status()
		ps.Throughput = d.history.get(p.name)
		st.Peers = append(st.Peers, ps)
	}
	st.Listeners = d.listeners.Describe()
	return st
}

// natType names this daemon's NAT: as classified, else "none" when the
// server sees one of our own addresses, else "unknown".
func (d *Daemon) natType() string {
	if n, ok := d.nat.get(); ok {
		return n.String()
	}
	if obs := d.rv.Observed(); obs.IsValid() && d.isLocal(obs.Addr()) {
		return "none"
	}
	return "unknown"
}

func (d *Daemon) isLocal(a netip.Addr) bool {
	addrs, _ := punch.InterfaceAddrs()
	return slices.Contains(addrs, a)
}

func (p *peer) status() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := PeerStatus{Name: p.name, PublicKey: p.key.String(), State: p.state, Error: p.lastErr}
	if p.state == StateOffline {
		since := p.offlineSince.UTC()
		ps.Since = &since
	}
	if p.link != nil {
		s := p.link.Stats()
		since := s.Since.UTC()
		ps.Path = p.link.Path()
		ps.Remote = p.link.Remote().String()
		ps.RTTMs = float64(s.RTT.Microseconds()) / 1000
		ps.Since = &since
		ps.SetupMs = float64(p.setup.Microseconds()) / 1000
		ps.BytesIn, ps.BytesOut = s.BytesIn, s.BytesOut
		ps.PeerNAT, ps.Strategy, ps.Why = p.punched.peerNAT, p.punched.strategy, p.punched.why
		c := p.punched.choice
		if ps.Path == session.PathUDP {
			ps.UDPStream = string(c.Stream)
		}
		if c.Quality.Sent > 0 {
			ps.Probe = &PathProbe{Sent: c.Quality.Sent, Lost: c.Quality.Lost, LossPercent: c.LossPercent(),
				RTTMs: float64(c.Quality.RTT.Microseconds()) / 1000, Lossy: c.Lossy, PreferUDP: c.PreferUDP,
				HeldTCPMs: float64(c.HeldTCP.Microseconds()) / 1000}
		}
		ps.Choice = p.punched.choiceWhy
		if r := p.punched.remembered; r != nil {
			ps.Remembered = &RememberedPath{Path: r.Path, SetupMs: float64(r.Setup.Microseconds()) / 1000, At: r.At.UTC()}
		}
	}
	// After an upgrade, streams opened on the relay stay there until they
	// end: they are the peer's streams all the same.
	for _, l := range p.counters.live {
		ps.Streams += l.Stats().Streams
	}
	return ps
}

// Caps on the admin listener's connections: a scraper and a few status
// calls need a handful; the rest could only be a flood.
const (
	adminMaxConns          = 64
	adminMaxConnsPerSource = 32
)

// adminServer serves the status API and the metrics.
type adminServer struct {
	ln  net.Listener
	srv *http.Server
}

func listenAdmin(addr string, d *Daemon) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(d.Status())
	})
	mux.HandleFunc("GET /metrics", d.serveMetrics)
	mux.HandleFunc("GET /{$}", serveDashboard)
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		res, code, err := d.Ping(r.Context(), r.URL.Query().Get("peer"))
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	handler := checkHost(mux, addr, d.log.WithField("component", "admin"))
	// Every admin connection holds a place for its whole life (the API has
	// no authentication); the header timeout is its handshake deadline,
	// the idle timeout frees the places of kept-alive clients.
	ln = admit.Listener{Listener: ln, Gate: admit.NewGate(adminMaxConnsPerSource, adminMaxConns)}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	return &adminServer{ln: ln, srv: srv}, nil
}

// PingResult is what GET /ping?peer=NAME returns: one round trip over the
// peer's link, measured at the link layer (a yamux ping through TLS and the
// path), so it shows the path's own delay without any service's.
type PingResult struct {
	Peer   string  `json:"peer"`
	Path   string  `json:"path"`
	Remote string  `json:"remote"`
	RTTMs  float64 `json:"rtt_ms"`
}

// Ping measures one round trip over the named peer's link. The HTTP code
// goes with the error: 404 for a peer not configured, 503 when no link is
// up, 504 when the ping got no answer.
func (d *Daemon) Ping(ctx context.Context, name string) (PingResult, int, error) {
	p := d.peerByName(name)
	if p == nil {
		return PingResult{}, http.StatusNotFound, fmt.Errorf("no peer named %q", name)
	}
	p.mu.Lock()
	l := p.link
	p.mu.Unlock()
	if l == nil {
		return PingResult{}, http.StatusServiceUnavailable, fmt.Errorf("peer %s: %w", name, ErrNoLink)
	}
	type answer struct {
		rtt time.Duration
		err error
	}
	done := make(chan answer, 1)
	go func() {
		rtt, err := l.Ping()
		done <- answer{rtt, err}
	}()
	select {
	case a := <-done:
		if a.err != nil {
			return PingResult{}, http.StatusGatewayTimeout, fmt.Errorf("peer %s: ping: %w", name, a.err)
		}
		return PingResult{Peer: name, Path: l.Path(), Remote: l.Remote().String(), RTTMs: float64(a.rtt.Nanoseconds()) / 1e6}, http.StatusOK, nil
	case <-ctx.Done():
		return PingResult{}, http.StatusGatewayTimeout, fmt.Errorf("peer %s: ping: %w", name, ctx.Err())
	}
}

func (a *adminServer) serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		a.srv.Shutdown(sctx)
	})
	defer stop()
	if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return
	}
}
