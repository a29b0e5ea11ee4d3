package config

import "time"

// Config is a warren peer daemon's configuration, as read from TOML by Load.
// Keys left out take their defaults; Load fills those in and verifies
// everything, so after a successful Load no field needs checking again:
// KeyFile is absolute, Link.Relay and Link.PortMapping are non-nil,
// durations are positive.
type Config struct {
	// KeyFile is this daemon's Ed25519 private key (PEM, PKCS#8). Relative
	// paths are relative to the config file; Load stores the resolved,
	// absolute path. Make it with `warren keygen -o FILE`: a missing file
	// is an error unless CreateKey is set. Default: "warren.key".
	KeyFile string `toml:"key_file"`

	// CreateKey lets the daemon create KeyFile (mode 0600) when it does
	// not exist. Off by default, because a typo in key_file would
	// otherwise silently give the daemon a new identity that no peer
	// knows. Default: false.
	CreateKey bool `toml:"create_key"`

	// StateDir is where the daemon keeps what it learns between runs: the
	// path each peer's punch sessions won from each network
	// (paths-KEY.json, named after the daemon's key), so that the next session tries that path first.
	// Relative paths are relative to the config file; Load stores the
	// absolute path. Default: the directory of KeyFile.
	StateDir string `toml:"state_dir"`

	// LogLevel is one of trace, debug, info, warn, error. Default: "info".
	LogLevel string `toml:"log_level"`

	// LogFormat is "text" or "json". Default: "text".
	LogFormat string `toml:"log_format"`

	// AccessLog logs one line per forwarded connection at info, on both
	// the local and the exit side. Off, those lines are at debug and a
	// summary is logged each minute. Default: false.
	AccessLog bool `toml:"access_log"`

	// AdminListen is where the status API listens. Default:
	// "127.0.0.1:7780". "off" disables it: AdminListen is empty after Load
	// exactly then.
	AdminListen string `toml:"admin_listen"`

	Rendezvous Rendezvous `toml:"rendezvous"`
	Link       Link       `toml:"link"`
	Peers      []Peer     `toml:"peers"`
	Expose     []Expose   `toml:"expose"`
	Socks      []Socks    `toml:"socks"`
	Forward    []Forward  `toml:"forward"`

	// Path is the file the config was loaded from (not a TOML key).
	Path string `toml:"-"`

	// lines is the line of every key in the file, for errors found after
	// Load (ErrorAt).
	lines map[string]int
}

// Rendezvous says how to reach and authenticate the rendezvous server.
type Rendezvous struct {
	// Address is host:port of the server's TCP control port (a name or an
	// IP; IPv6 in brackets). Required, unless Addresses is set; Load sets
	// it to Addresses' first.
	Address string `toml:"address"`
	// Addresses are a cluster's nodes (rendezvous/doc.go, "Clustering"),
	// each as Address: the daemon registers with the nearest (by a UDP
	// probe's round trip; about as near, the first listed) and, when its
	// connection ends, with the next. Set Address or Addresses, not
	// both; Load sets Addresses to [Address] when only Address is set.
	// Every node must hold the key public_key pins.
	Addresses []string `toml:"addresses"`
	// PublicKey pins the server's Ed25519 key (base64url). Required.
	PublicKey string `toml:"public_key"`
	// Token is presented at registration when the server requires one.
	// A config that holds it must be readable by its owner only.
	Token string `toml:"token"`
	// TokenFile names a file holding the token instead (its first line),
	// readable by its owner only; relative paths are relative to the
	// config file. Load resolves it and reads it into Token. Set Token or
	// TokenFile, not both.
	TokenFile string `toml:"token_file"`
	// FallbackAddress is where the daemon looks for the server when
	// Address cannot be reached (refused, or no answer within a quarter
	// second): a network that lets out only HTTPS. Default: Address's
	// host on port 443.
	FallbackAddress string `toml:"fallback_address"`
	// Proxy is an HTTP proxy (http://[user:password@]host:port) that
	// every connection to the server, control and relay, goes through
	// with CONNECT. Default: HTTPS_PROXY (or https_proxy) from the
	// environment, unless NO_PROXY names the server; none if unset.
	Proxy string `toml:"proxy"`
}

// Link tunes peer links.
type Link struct {
	// Transports lists the transports tried in parallel, in order of
	// preference. Known: "tcp" (punched TCP) and "udp" (a reliable
	// stream over a punched UDP socket, see UDPStream), tried in
	// parallel. Default: ["tcp", "udp"].
	Transports []string `toml:"transports"`
	// UDPStream is the protocol a UDP link runs over its punched socket:
	// "auto", "quic" (quic-go) or "kcp" (kcp-go). Every daemon speaks
	// both; the side whose key sorts lower decides and its choice travels
	// with the punch, so two peers never disagree. "auto" (the default)
	// measures each path with a probe train after the punch and picks by
	// transport.ChooseStream: QUIC on a LAN (several times KCP there),
	// KCP on longer and lossy paths, where QUIC's loss-based congestion
	// control collapses (docs/benchmarks.md); on a path that lost probes
	// it also prefers the UDP link to a direct TCP one.
	UDPStream string `toml:"udp_stream"`
	// Relay allows relaying through the rendezvous server when no direct
	// path is found. Default: true; never nil after Load.
	Relay *bool `toml:"relay"`
	// PortMapping asks the router (UPnP IGD, NAT-PMP or PCP, whichever
	// answers first) to map the shared punch port, TCP and UDP, and offers
	// the mapping to peers: a peer then connects straight to it, even when
	// both NATs are symmetric. It maps that port only, renews it, and
	// deletes it when the daemon stops. Default: true (as Tailscale and
	// iroh do); never nil after Load.
	PortMapping *bool `toml:"port_mapping"`
	// KeepAlive is the link keepalive interval. Default: 15s.
	KeepAlive Duration `toml:"keepalive"`
	// StreamWindow is the per-stream receive window in bytes. Default:
	// 4 MiB; minimum 256 KiB.
	StreamWindow uint32 `toml:"stream_window"`
	// MaxStreams caps concurrent streams a peer may open (those this end
	// closed that the peer has not finished count). Default: 16384.
	MaxStreams int `toml:"max_streams"`
	// ReceiveBudget bounds the bytes a peer may have sent on all its
	// streams that this daemon has not passed on yet (a target that does
	// not read); a stream that would go over it is reset. Default: 64 MiB;
	// at least stream_window.
	ReceiveBudget int64 `toml:"receive_budget"`
	// SprayRate caps the packets per second of all punches together (UDP
	// pings, prediction and birthday punches, TCP connect attempts):
	// bursts get users flagged as port scanners. It also sets the punch
	// budgets: 3 × SprayRate packets in any minute, 2 × SprayRate pings in
	// one UDP punch session. Default 2000; 100 to 100000.
	SprayRate int `toml:"spray_rate"`
	// PunchTimeout bounds one hole-punching attempt. Default: 10s.
	PunchTimeout Duration `toml:"punch_timeout"`
}

// Peer is another warren daemon this one links to, and what it may do here.
type Peer struct {
	// Name is a local label, unique in this config. Required.
	Name string `toml:"name"`
	// PublicKey pins the peer's Ed25519 key (base64url). Required, unique.
	PublicKey string `toml:"public_key"`
	// Exit lets the peer dial arbitrary targets through this daemon.
	Exit bool `toml:"exit"`
	// Targets are host:port patterns the peer may dial when Exit is false:
	// host is a name, an IP, a CIDR or "*" (or "*.suffix"); port is a
	// number, a range "lo-hi" or "*".
	Targets []string `toml:"targets"`
}

// Expose publishes a local service to some peers under a name.
type Expose struct {
	// Name is how peers ask for the service. Required, unique.
	Name string `toml:"name"`
	// Target is the host:port the service listens on. Required.
	Target string `toml:"target"`
	// Peers lists the peer names allowed to reach it. Required, non-empty;
	// each must be a [[peers]] name.
	Peers []string `toml:"peers"`
	// Protocol is "tcp" (default) or "udp": what Target speaks, and so
	// which [[forward]] protocol may reach it.
	Protocol string `toml:"protocol"`
}

// Socks is a local SOCKS5 listener whose connections exit through a peer.
type Socks struct {
	// Listen is the local address. Required; unique among socks and
	// forward listeners unless its port is 0.
	Listen string `toml:"listen"`
	// Peer is the exit peer's name. Required; must be a [[peers]] name.
	Peer string `toml:"peer"`
	// Username and Password enable RFC 1929 authentication. Set both or
	// neither. A config with a password must be readable by its owner
	// only.
	Username string `toml:"username"`
	Password string `toml:"password"`
}

// Forward is a static local port forward through a peer.
type Forward struct {
	// Listen is the local address. Required; unique among socks and
	// forward listeners unless its port is 0.
	Listen string `toml:"listen"`
	// Peer is the peer's name. Required; must be a [[peers]] name.
	Peer string `toml:"peer"`
	// Service names an [[expose]] on that peer. Exactly one of Service and
	// Target is set.
	Service string `toml:"service"`
	// Target is host:port, dialled by the peer (needs exit or targets there).
	Target string `toml:"target"`
	// Protocol is "tcp" (default) or "udp". A UDP forward carries each
	// local client's datagrams over a stream of its own; the service or
	// target must speak UDP too.
	Protocol string `toml:"protocol"`
	// IdleTimeout ends a UDP client's stream after this long without a
	// datagram either way. Default: 1m; only for protocol = "udp".
	IdleTimeout Duration `toml:"idle_timeout"`
}

// Server is the rendezvous server's configuration, as read from TOML by
// LoadServer. Keys left out take their defaults; LoadServer fills those in
// and verifies everything.
type Server struct {
	// Listen is the TCP control address peers register with. Default:
	// "0.0.0.0:7777".
	Listen string `toml:"listen"`

	// AltListen is an optional second address, on another IP and/or port,
	// that lets peers learn how their NAT maps different destinations.
	// Must differ from Listen. Default: none.
	AltListen string `toml:"alt_listen"`

	// FallbackListen is a further TCP address served exactly like Listen
	// (control and relay, no UDP), for daemons on networks that let out
	// only HTTPS: typically port 443. Default: none.
	FallbackListen string `toml:"fallback_listen"`

	// KeyFile is the server's Ed25519 private key, resolved like
	// Config.KeyFile. Default: "rendezvous.key".
	KeyFile string `toml:"key_file"`

	// Token, when set, must be presented by peers registering. A config
	// that holds it must be readable by its owner only.
	Token string `toml:"token"`

	// TokenFile names a file holding the token instead, as in
	// Rendezvous.TokenFile.
	TokenFile string `toml:"token_file"`

	// AllowKeys, if not empty, are the only daemon public keys (base64url)
	// that may register: a private server. Default: any key (strangers
	// can register, and learn nothing of anyone who does not consent).
	AllowKeys []string `toml:"allow_keys"`

	// LogLevel and LogFormat are as in Config.
	LogLevel  string `toml:"log_level"`
	LogFormat string `toml:"log_format"`

	// Relay lets the server relay traffic between peers that cannot reach
	// each other directly. Default: true; never nil after LoadServer.
	Relay *bool `toml:"relay"`

	// RelayRate caps the bytes per second each peer (key) may send
	// through the relay, all its relayed links together. Absent (nil):
	// the server's default, 8 MiB/s; 0: no cap.
	RelayRate *int64 `toml:"relay_rate"`

	// RelayDailyBytes caps the bytes each peer may send through the relay
	// in a day; past it, its relays end until the day is over. Absent:
	// the server's default, 16 GiB; 0: no cap.
	RelayDailyBytes *int64 `toml:"relay_daily_bytes"`

	// MaxRelaysPerKey caps the relays one peer holds at once. Absent: the
	// server's default, 32; 0: no cap.
	MaxRelaysPerKey *int `toml:"max_relays_per_key"`

	// RelayCapacity is the bytes per second this node's relays may carry
	// in all: in a cluster, a node past 80% of it is not chosen for new
	// relays while another is under. It caps nothing by itself. Absent
	// or 0: 104857600 (100 MiB/s).
	RelayCapacity int64 `toml:"relay_capacity"`

	// Limits keeps the server's defences on: connection caps per source
	// address and in all, connection, connect-request and UDP probe rates
	// (rendezvous/spec.md, "Limits"). Default: true; turn it off only to
	// load-test from one machine. Never nil after LoadServer.
	Limits *bool `toml:"limits"`

	// AdminListen is where the status API listens. Default: off (empty);
	// "off" also turns it off.
	AdminListen string `toml:"admin_listen"`

	// Clustering (rendezvous/doc.go, "Clustering"): none of these set, the
	// server is a single node and uses no NATS.

	// NATS lists the URLs of an existing NATS deployment this node joins
	// the cluster through (nats://HOST:PORT, tls://HOST:PORT). Not with
	// ClusterListen.
	NATS []string `toml:"nats"`
	// NATSCreds is a NATS credentials file for NATS, resolved like
	// KeyFile. Default: none.
	NATSCreds string `toml:"nats_creds"`
	// ClusterListen is host:port where this node's embedded NATS server
	// takes routes from the other nodes'. Keep it on a private network
	// (see ClusterSecretFile).
	ClusterListen string `toml:"cluster_listen"`
	// ClusterPeers are the other nodes' cluster_listen, as
	// nats://HOST:PORT; some of them are enough, NATS finds the rest.
	// Only with ClusterListen.
	ClusterPeers []string `toml:"cluster_peers"`
	// ClusterSecretFile holds a secret (its first line) every node's
	// embedded NATS requires of the routes of the others: without it,
	// anyone who reaches cluster_listen joins the cluster. Resolved like
	// KeyFile; readable by its owner only. Default: none (routes are
	// open: a private network only).
	ClusterSecretFile string `toml:"cluster_secret_file"`
	// ClusterSecret is the secret read from ClusterSecretFile (not a TOML
	// key).
	ClusterSecret string `toml:"-"`
	// Node is this node's name, unique in the cluster: letters, digits,
	// '-' and '_'. Default: the host name (its characters outside those
	// made '-').
	Node string `toml:"node"`
	// Public is host:port where peers reach this node (its listen
	// address as the world sees it): the peers of a session it
	// coordinates relay through it. Required in a cluster unless listen
	// names a specific IP, which is then the default.
	Public string `toml:"public"`

	// Path is the file the config was loaded from (not a TOML key).
	Path string `toml:"-"`
}

// Clustered reports whether the server is asked to run as a cluster's
// node.
func (s *Server) Clustered() bool { return len(s.NATS) > 0 || s.ClusterListen != "" }

// Duration is a time.Duration that reads TOML strings like "15s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText formats the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
