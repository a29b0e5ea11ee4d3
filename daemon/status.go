package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// Status is what GET /status returns.
type Status struct {
	PublicKey  string       `json:"public_key"`
	Rendezvous string       `json:"rendezvous"` // "registered" or "connecting"
	Observed   string       `json:"observed,omitempty"`
	NAT        string       `json:"nat"` // "none", "cone", "symseq(+1)", "symrand", ...; "unknown" until classified
	PunchPort  int          `json:"punch_port"`
	Uptime     float64      `json:"uptime_s"`
	Peers      []PeerStatus `json:"peers"`
}

// PeerStatus is one configured peer's row.
type PeerStatus struct {
	Name      string     `json:"name"`
	PublicKey string     `json:"public_key"`
	State     string     `json:"state"`
	Path      string     `json:"path"`
	Remote    string     `json:"remote"`
	RTTMs     float64    `json:"rtt_ms"`
	Since     *time.Time `json:"since,omitempty"`
	SetupMs   float64    `json:"setup_ms,omitempty"` // from connect request to link up
	BytesIn   int64      `json:"bytes_in"`
	BytesOut  int64      `json:"bytes_out"`
	Streams   int64      `json:"streams"`
	Error     string     `json:"error,omitempty"`
}

// Status reports the daemon and every configured peer.
func (d *Daemon) Status() Status {
	st := Status{PublicKey: d.key.Public().String(), Rendezvous: "connecting", NAT: "unknown", Peers: []PeerStatus{}}
	if d.acceptor != nil {
		st.PunchPort = d.acceptor.Port()
		st.Uptime = time.Since(d.started).Seconds()
	}
	select {
	case <-d.rv.Registered():
		st.Rendezvous = "registered"
	default:
	}
	if obs := d.rv.Observed(); obs.IsValid() {
		st.Observed = obs.String()
		if d.isLocal(obs.Addr()) {
			st.NAT = "none"
		}
	}
	if n, ok := d.classifiedNAT(); ok {
		st.NAT = n.String()
	}
	for _, p := range d.peerList() {
		st.Peers = append(st.Peers, p.status())
	}
	return st
}

func (d *Daemon) isLocal(a netip.Addr) bool {
	addrs, _ := punch.InterfaceAddrs()
	return slices.Contains(addrs, a)
}

func (p *peer) status() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := PeerStatus{Name: p.name, PublicKey: p.key.String(), State: p.state, Error: p.lastErr}
	if p.link != nil {
		s := p.link.Stats()
		since := s.Since.UTC()
		ps.Path = p.link.Path()
		ps.Remote = p.link.Remote().String()
		ps.RTTMs = float64(s.RTT.Microseconds()) / 1000
		ps.Since = &since
		ps.SetupMs = float64(p.setup.Microseconds()) / 1000
		ps.BytesIn, ps.BytesOut, ps.Streams = s.BytesIn, s.BytesOut, s.Streams
	}
	return ps
}

// adminServer serves the status API.
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
	return &adminServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
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
