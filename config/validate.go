package config

import (
	"cmp"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
	"github.com/warren-p2p/warren/session"
)

const (
	defaultKeyFile     = "warren.key"
	defaultAdminListen = "127.0.0.1:7780"
	// The [link] defaults are the components' own.
	defaultKeepAlive     = link.DefaultKeepAliveInterval
	defaultPunchTimeout  = session.DefaultTimeout
	defaultStreamWindow  = link.DefaultStreamWindow
	minStreamWindow      = link.MinStreamWindow
	defaultMaxStreams    = link.DefaultMaxStreams
	defaultRecvBudget    = link.DefaultReceiveBudget
	defaultSprayRate     = punch.DefaultSprayRate
	defaultUDPStream     = "auto"
	defaultUDPIdle       = time.Minute
	defaultServerListen  = "0.0.0.0:7777"
	defaultServerKeyFile = "rendezvous.key"
)

// finish fills in defaults and checks every rule that types alone do not
// express, recording problems in p.
func (c *Config) finish(p *problems, md toml.MetaData) {
	c.KeyFile = resolvePath(c.Path, cmp.Or(c.KeyFile, defaultKeyFile))
	if c.StateDir == "" {
		c.StateDir = filepath.Dir(c.KeyFile)
	} else {
		c.StateDir = resolvePath(c.Path, c.StateDir)
	}
	c.LogLevel, c.LogFormat = checkLogging(p, c.LogLevel, c.LogFormat)
	c.AdminListen = checkAdmin(p, c.AdminListen, defaultAdminListen)
	c.Rendezvous.check(p)
	if c.Rendezvous.TokenFile != "" {
		c.Rendezvous.TokenFile = resolvePath(c.Path, c.Rendezvous.TokenFile)
		readTokenFile(p, "rendezvous.token", "rendezvous.token_file", c.Rendezvous.TokenFile, &c.Rendezvous.Token)
	}
	c.Link.finish(p, md)
	peers := checkPeers(p, c.Peers)
	checkExposes(p, c.Expose, peers)
	checkSocks(p, c.Socks, peers)
	checkForwards(p, c.Forward, peers)

	l := listeners{p: p}
	l.claim("admin_listen", "tcp", c.AdminListen)
	for i, s := range c.Socks {
		l.claim(keyIndex("socks", i)+".listen", "tcp", s.Listen)
	}
	for i, f := range c.Forward {
		l.claim(keyIndex("forward", i)+".listen", f.Protocol, f.Listen)
	}
}

// finish is Config.finish for the rendezvous server.
func (s *Server) finish(p *problems) {
	s.Listen = cmp.Or(s.Listen, defaultServerListen)
	checkAddrKey(p, "listen", s.Listen, listenAddr)
	if s.AltListen != "" {
		checkAddrKey(p, "alt_listen", s.AltListen, listenAddr)
	}
	if s.FallbackListen != "" {
		checkAddrKey(p, "fallback_listen", s.FallbackListen, listenAddr)
	}
	s.KeyFile = resolvePath(s.Path, cmp.Or(s.KeyFile, defaultServerKeyFile))
	if s.TokenFile != "" {
		s.TokenFile = resolvePath(s.Path, s.TokenFile)
		readTokenFile(p, "token", "token_file", s.TokenFile, &s.Token)
	}
	for i, k := range s.AllowKeys {
		checkPublicKeyKey(p, keyIndex("allow_keys", i), k)
	}
	s.LogLevel, s.LogFormat = checkLogging(p, s.LogLevel, s.LogFormat)
	if s.Relay == nil {
		s.Relay = new(true)
	}
	if s.Limits == nil {
		s.Limits = new(true)
	}
	for _, l := range []struct {
		key string
		v   int64
	}{{"relay_rate", deref(s.RelayRate)}, {"relay_daily_bytes", deref(s.RelayDailyBytes)},
		{"max_relays_per_key", int64(deref(s.MaxRelaysPerKey))}, {"relay_capacity", s.RelayCapacity}} {
		if l.v < 0 {
			p.add(l.key, "must not be negative, got %d", l.v)
		}
	}
	s.AdminListen = checkAdmin(p, s.AdminListen, "")
	s.finishCluster(p)

	l := listeners{p: p}
	l.claim("listen", "tcp", s.Listen)
	l.claim("alt_listen", "tcp", s.AltListen)
	l.claim("fallback_listen", "tcp", s.FallbackListen)
	l.claim("admin_listen", "tcp", s.AdminListen)
	l.claim("cluster_listen", "tcp", s.ClusterListen)
}

// finishCluster resolves and reads the clustering keys' files, and
// checks them all.
func (s *Server) finishCluster(p *problems) {
	if s.NATSCreds != "" {
		s.NATSCreds = resolvePath(s.Path, s.NATSCreds)
	}
	if s.ClusterSecretFile != "" {
		s.ClusterSecretFile = resolvePath(s.Path, s.ClusterSecretFile)
		readTokenFile(p, "cluster_secret_file", "cluster_secret_file", s.ClusterSecretFile, &s.ClusterSecret)
	}
	s.checkCluster(p)
}

// CheckCluster checks the clustering keys again and fills in their
// defaults, after the command line changed them (its errors name the
// keys, which the flags are named after).
func (s *Server) CheckCluster() error {
	p := &problems{file: s.Path}
	s.checkCluster(p)
	return p.errs.asError()
}

// checkCluster defaults and checks the clustering keys.
func (s *Server) checkCluster(p *problems) {
	if len(s.NATS) > 0 && s.ClusterListen != "" {
		p.add("nats", "set nats (an existing NATS) or cluster_listen (NATS embedded in each node), not both")
	}
	for i, u := range s.NATS {
		checkNATSURL(p, keyIndex("nats", i), "nats", u, "nats", "tls", "ws", "wss")
	}
	if s.NATSCreds != "" && len(s.NATS) == 0 {
		p.add("nats_creds", "only with nats")
	}
	if s.ClusterListen != "" {
		checkAddrKey(p, "cluster_listen", s.ClusterListen, listenAddr)
	}
	if len(s.ClusterPeers) > 0 && s.ClusterListen == "" {
		p.add("cluster_peers", "only with cluster_listen")
	}
	for i, u := range s.ClusterPeers {
		checkNATSURL(p, keyIndex("cluster_peers", i), "cluster_peers", u, "nats")
	}
	if s.ClusterSecretFile != "" && s.ClusterListen == "" {
		p.add("cluster_secret_file", "only with cluster_listen")
	}
	if !s.Clustered() {
		for _, k := range []struct{ key, v string }{{"node", s.Node}, {"public", s.Public}} {
			if k.v != "" {
				p.add(k.key, "only in a cluster (with nats or cluster_listen)")
			}
		}
		return
	}
	if s.Node == "" {
		s.Node = DefaultNodeName()
	}
	if !validNodeName(s.Node) {
		p.add("node", "%q: want 1 to 64 letters, digits, '-' or '_'", s.Node)
	}
	if s.Public == "" {
		host, _, err := net.SplitHostPort(s.Listen)
		if ip := net.ParseIP(host); err != nil || ip == nil || ip.IsUnspecified() {
			p.add("public", "must be set in a cluster (how peers reach this node, host:port), as listen names no specific IP")
			return
		}
		s.Public = s.Listen
	}
	checkAddrKey(p, "public", s.Public, dialAddr)
}

// checkNATSURL checks a NATS URL of one of the schemes given.
func checkNATSURL(p *problems, elem, key, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Port() == "" || u.Hostname() == "" {
		p.addAt(elem, key, "%q: want %s://HOST:PORT", raw, strings.Join(schemes, "|"))
	}
}

// DefaultNodeName is the host name with the characters a node name may
// not have made '-' ("node" if there is none).
func DefaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	return string(b[:min(len(b), 64)])
}

// validNodeName is rendezvous' rule for node names (a NATS subject token).
func validNodeName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// required reports an empty value and says whether there is one to check
// further.
func required(p *problems, key, value string) bool {
	if value == "" {
		p.add(key, "must be set")
		return false
	}
	return true
}

func checkAddrKey(p *problems, key, addr string, use addrUse) {
	if err := checkAddr(addr, use); err != nil {
		p.add(key, "%v", err)
	}
}

func checkPublicKeyKey(p *problems, key, value string) []byte {
	b, err := checkPublicKey(value)
	if err != nil {
		p.add(key, "%v", err)
	}
	return b
}

// checkLogging defaults and checks log_level and log_format.
func checkLogging(p *problems, level, format string) (string, string) {
	level, format = cmp.Or(level, "info"), cmp.Or(format, "text")
	if !slices.Contains([]string{"trace", "debug", "info", "warn", "error"}, level) {
		p.add("log_level", "%q is not one of trace, debug, info, warn, error", level)
	}
	if format != "text" && format != "json" {
		p.add("log_format", "%q is neither text nor json", format)
	}
	return level, format
}

// checkAdmin resolves admin_listen: empty means the default, "off" means
// no admin listener, which callers see as "".
func checkAdmin(p *problems, addr, def string) string {
	switch addr {
	case "":
		return def
	case "off":
		return ""
	}
	checkAddrKey(p, "admin_listen", addr, listenAddr)
	return addr
}

func (r *Rendezvous) check(p *problems) {
	const key = "rendezvous.addresses"
	switch {
	case r.Address != "" && r.Addresses != nil:
		p.add(key, "set rendezvous.address or rendezvous.addresses, not both")
	case r.Addresses != nil:
		if len(r.Addresses) == 0 {
			p.add(key, "must list at least one host:port")
		}
		for i, a := range r.Addresses {
			elem := keyIndex(key, i)
			if slices.Contains(r.Addresses[:i], a) {
				p.addAt(elem, key, "%q is listed twice", a)
			} else if err := checkAddr(a, dialAddr); err != nil {
				p.addAt(elem, key, "%v", err)
			}
		}
		if len(r.Addresses) > 0 {
			r.Address = r.Addresses[0]
		}
	case required(p, "rendezvous.address", r.Address):
		checkAddrKey(p, "rendezvous.address", r.Address, dialAddr)
		r.Addresses = []string{r.Address}
	}
	if required(p, "rendezvous.public_key", r.PublicKey) {
		checkPublicKeyKey(p, "rendezvous.public_key", r.PublicKey)
	}
	if r.FallbackAddress != "" {
		checkAddrKey(p, "rendezvous.fallback_address", r.FallbackAddress, dialAddr)
	}
	if r.Proxy != "" {
		if _, err := rendezvous.ParseProxy(r.Proxy); err != nil {
			p.add("rendezvous.proxy", "%v", err)
		}
	}
}

// finish defaults and checks [link]. md tells a key set to zero, which is
// an error, from a key left out, which takes the default.
func (l *Link) finish(p *problems, md toml.MetaData) {
	set := func(key string) bool { return md.IsDefined("link", key) }
	l.checkTransports(p)
	if l.Relay == nil {
		l.Relay = new(true)
	}
	if l.PortMapping == nil {
		l.PortMapping = new(true)
	}
	l.KeepAlive = positiveDuration(p, "link.keepalive", l.KeepAlive, set("keepalive"), defaultKeepAlive)
	l.PunchTimeout = positiveDuration(p, "link.punch_timeout", l.PunchTimeout, set("punch_timeout"), defaultPunchTimeout)
	switch {
	case !set("stream_window"):
		l.StreamWindow = defaultStreamWindow
	case l.StreamWindow < minStreamWindow:
		p.add("link.stream_window", "%d is below the minimum of %d (256 KiB)", l.StreamWindow, minStreamWindow)
	}
	switch {
	case !set("max_streams"):
		l.MaxStreams = defaultMaxStreams
	case l.MaxStreams <= 0:
		p.add("link.max_streams", "must be positive, got %d", l.MaxStreams)
	}
	switch {
	case !set("receive_budget"):
		l.ReceiveBudget = defaultRecvBudget
	case l.ReceiveBudget < int64(l.StreamWindow):
		p.add("link.receive_budget", "%d is below stream_window (%d)", l.ReceiveBudget, l.StreamWindow)
	}
	switch l.UDPStream {
	case "":
		l.UDPStream = defaultUDPStream
	case "auto", "quic", "kcp":
	default:
		p.add("link.udp_stream", "unknown UDP stream protocol %q (known: auto, quic, kcp)", l.UDPStream)
	}
	switch {
	case !set("spray_rate"):
		l.SprayRate = defaultSprayRate
	case l.SprayRate < 100 || l.SprayRate > 100000:
		p.add("link.spray_rate", "%d is outside 100 to 100000 packets per second", l.SprayRate)
	}
}

func (l *Link) checkTransports(p *problems) {
	const key = "link.transports"
	if l.Transports == nil {
		l.Transports = []string{"tcp", "udp"}
		return
	}
	if len(l.Transports) == 0 {
		p.add(key, "must list at least one transport (known: tcp, udp)")
	}
	for i, t := range l.Transports {
		elem := keyIndex(key, i)
		switch {
		case slices.Contains(l.Transports[:i], t):
			p.addAt(elem, key, "%q is listed twice", t)
		case t == "tcp", t == "udp":
		default:
			p.addAt(elem, key, "unknown transport %q (known: tcp, udp)", t)
		}
	}
}

func positiveDuration(p *problems, key string, d Duration, set bool, def time.Duration) Duration {
	if !set {
		return Duration{def}
	}
	if d.Duration <= 0 {
		p.add(key, "must be positive, got %s", d.Duration)
	}
	return d
}

// peerSet is the [[peers]] names in file order, for resolving references
// and listing the candidates when one does not resolve.
type peerSet []string

// ref checks that name is a peer; key is the referring key, elem the exact
// place when name is an array element.
func (ps peerSet) ref(p *problems, elem, key, name string) {
	if slices.Contains(ps, name) {
		return
	}
	known := "no [[peers]] are defined"
	if len(ps) > 0 {
		known = "known: " + strings.Join(ps, ", ")
	}
	p.addAt(elem, key, "no peer named %q (%s)", name, known)
}

func checkPeers(p *problems, peers []Peer) peerSet {
	var names peerSet
	byName := map[string]string{} // name → key of the peer that has it
	byKey := map[string]string{}  // decoded public key → key of the peer that has it
	for i := range peers {
		peer := &peers[i]
		key := keyIndex("peers", i)
		if required(p, key+".name", peer.Name) {
			if other, dup := byName[peer.Name]; dup {
				p.add(key+".name", "duplicate peer name %q (also %s)", peer.Name, other)
			} else {
				byName[peer.Name] = key
				names = append(names, peer.Name)
			}
		}
		// Compare decoded keys: two spellings of one key are still one peer.
		if required(p, key+".public_key", peer.PublicKey) {
			if b := checkPublicKeyKey(p, key+".public_key", peer.PublicKey); b != nil {
				if other, dup := byKey[string(b)]; dup {
					p.add(key+".public_key", "same key as %s", other)
				} else {
					byKey[string(b)] = key
				}
			}
		}
		checkTargets(p, key+".targets", peer.Targets)
	}
	return names
}

// checkTargets checks that every exit target pattern parses; the forward
// package parses them again into its policy.
func checkTargets(p *problems, key string, targets []string) {
	for i, s := range targets {
		if _, err := ParseTargetPattern(s); err != nil {
			p.addAt(keyIndex(key, i), key, "%v", err)
		}
	}
}

func checkExposes(p *problems, exposes []Expose, peers peerSet) {
	byName := map[string]string{}
	for i := range exposes {
		e := &exposes[i]
		key := keyIndex("expose", i)
		if required(p, key+".name", e.Name) {
			if other, dup := byName[e.Name]; dup {
				p.add(key+".name", "duplicate expose name %q (also %s)", e.Name, other)
			} else {
				byName[e.Name] = key
			}
		}
		if required(p, key+".target", e.Target) {
			checkAddrKey(p, key+".target", e.Target, dialAddr)
		}
		if len(e.Peers) == 0 {
			p.add(key+".peers", "must list at least one [[peers]] name")
		}
		for j, name := range e.Peers {
			peers.ref(p, keyIndex(key+".peers", j), key+".peers", name)
		}
		e.Protocol = checkProtocol(p, key+".protocol", e.Protocol)
	}
}

// checkProtocol checks a protocol key and returns it with its default.
func checkProtocol(p *problems, key, proto string) string {
	switch proto {
	case "":
		return "tcp"
	case "tcp", "udp":
	default:
		p.add(key, "unknown protocol %q (want tcp or udp)", proto)
	}
	return proto
}

func checkSocks(p *problems, socks []Socks, peers peerSet) {
	for i, s := range socks {
		key := keyIndex("socks", i)
		if required(p, key+".listen", s.Listen) {
			checkAddrKey(p, key+".listen", s.Listen, listenAddr)
		}
		if required(p, key+".peer", s.Peer) {
			peers.ref(p, key+".peer", key+".peer", s.Peer)
		}
		// One without the other is almost certainly a mistake, and silently
		// running an unauthenticated proxy would be the worst reading of it.
		switch {
		case s.Username != "" && s.Password == "":
			p.add(key+".password", "must be set when username is")
		case s.Username == "" && s.Password != "":
			p.add(key+".username", "must be set when password is")
		}
	}
}

func checkForwards(p *problems, forwards []Forward, peers peerSet) {
	for i := range forwards {
		f := &forwards[i]
		key := keyIndex("forward", i)
		if required(p, key+".listen", f.Listen) {
			checkAddrKey(p, key+".listen", f.Listen, listenAddr)
		}
		if required(p, key+".peer", f.Peer) {
			peers.ref(p, key+".peer", key+".peer", f.Peer)
		}
		switch {
		case f.Service == "" && f.Target == "":
			p.add(key, "set service (a name the peer exposes) or target (host:port the peer dials)")
		case f.Service != "" && f.Target != "":
			p.add(key+".target", "set service or target, not both")
		case f.Target != "":
			checkAddrKey(p, key+".target", f.Target, dialAddr)
		}
		f.Protocol = checkProtocol(p, key+".protocol", f.Protocol)
		switch {
		case f.IdleTimeout.Duration < 0:
			p.add(key+".idle_timeout", "must be positive, got %s", f.IdleTimeout.Duration)
		case f.IdleTimeout.Duration > 0 && f.Protocol != "udp":
			p.add(key+".idle_timeout", "applies only to protocol = \"udp\" (TCP connections end when their client closes them)")
		case f.Protocol == "udp" && f.IdleTimeout.Duration == 0:
			f.IdleTimeout.Duration = defaultUDPIdle
		}
	}
}

// listeners spots two listeners on one address, which would fail only at
// startup, after the other one is already up.
type listeners struct {
	p    *problems
	used map[string]string // normalized address → key that claimed it
}

// claim registers addr for key, on network "tcp" or "udp" (a TCP and a
// UDP listener may share a port). Empty and invalid addresses are skipped
// (they are reported elsewhere), and so is port 0, since every such
// listener gets its own port.
func (l *listeners) claim(key, network, addr string) {
	if addr == "" || checkAddr(addr, listenAddr) != nil {
		return
	}
	if _, port, _ := net.SplitHostPort(addr); strings.Trim(port, "0") == "" { // "0", "00", ...
		return
	}
	norm := network + " " + sameAddr(addr)
	if other, dup := l.used[norm]; dup {
		l.p.add(key, "%q is already used by %s", addr, other)
		return
	}
	if l.used == nil {
		l.used = map[string]string{}
	}
	l.used[norm] = key
}

// deref is *v, or zero if v is nil.
func deref[T any](v *T) T {
	var zero T
	if v == nil {
		return zero
	}
	return *v
}
