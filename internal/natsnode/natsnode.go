// Package natsnode runs the NATS a clustered rendezvous node talks over:
// either a NATS server embedded in the node (routes to the other nodes'
// embedded servers; the node's own connection is in-process), or a connection to an existing NATS deployment. It is kept
// apart from package rendezvous so that the server's code depends on the
// NATS client API only, and the embedded server is linked where it runs.
package natsnode

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// ClusterName is the NATS cluster name every warren node's embedded
// server uses: routes between servers of different names are refused.
const ClusterName = "warren"

// Embedded is a NATS server running inside this process.
type Embedded struct {
	ns *server.Server
	nc *nats.Conn
}

// EmbedConfig configures Embed.
type EmbedConfig struct {
	// Node is the server's name, unique in the cluster.
	Node string
	// Listen is host:port of the cluster routes (port 0: any).
	Listen string
	// Peers are the other nodes' route URLs, nats://HOST:PORT. A node may
	// list only some of them: NATS learns the rest from those it reaches.
	Peers []string
	// User and Password, if set, are required of every route, both ways:
	// a node that does not present them cannot join.
	User, Password string
	// Log receives the embedded server's warnings and errors.
	Log logrus.FieldLogger
}

// Embed starts a NATS server with cluster routes on cfg.Listen and
// returns once it takes connections, connected to it in-process.
func Embed(cfg EmbedConfig) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster listen %q: %w", cfg.Listen, err)
	}
	port, err := net.LookupPort("tcp", portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster listen %q: %w", cfg.Listen, err)
	}
	if port == 0 {
		port = -1 // NATS' "any port"
	}
	// NATS starts its routes only once its client port listens, so it
	// gets one, on loopback, with a password made now that only this
	// process knows: this node's own connection (in-process) is its only
	// client.
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	clientPass := hex.EncodeToString(pw[:])
	opts := &server.Options{
		ServerName: cfg.Node,
		Host:       "127.0.0.1",
		Port:       -1,
		Username:   "node",
		Password:   clientPass,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name: ClusterName, Host: host, Port: port,
			Username: cfg.User, Password: cfg.Password,
			// Nodes come and go: keep trying to reach listed peers.
			ConnectRetries: -1,
		},
	}
	for _, p := range cfg.Peers {
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("cluster peer %q: want nats://HOST:PORT", p)
		}
		if cfg.User != "" {
			u.User = url.UserPassword(cfg.User, cfg.Password)
		}
		opts.Routes = append(opts.Routes, u)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Log != nil {
		ns.SetLoggerV2(&logger{cfg.Log.WithField("component", "nats")}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready within 10s (is the cluster port free?)")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.UserInfo("node", clientPass), nats.Name(cfg.Node), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: connect in-process: %w", err)
	}
	return &Embedded{ns: ns, nc: nc}, nil
}

// Conn is the node's connection to its embedded server.
func (e *Embedded) Conn() *nats.Conn { return e.nc }

// ClusterAddr is where the server takes routes, for other nodes'
// cluster peers.
func (e *Embedded) ClusterAddr() string {
	if a := e.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Routes is how many other nodes' servers this one has routes to.
func (e *Embedded) Routes() int { return e.ns.NumRoutes() }

// Close drops the connection and shuts the server down, waiting for it.
func (e *Embedded) Close() {
	e.nc.Close()
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}

// Dial connects to an existing NATS deployment at urls (comma-separated
// or several), with a credentials file if creds is not empty, retrying
// for ever once connected.
func Dial(urls []string, creds, node string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(node), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", strings.Join(urls, ","), err)
	}
	return nc, nil
}

// logger passes the embedded server's lines to logrus, its notices at
// debug: routes coming and going are the cluster's normal life.
type logger struct{ log logrus.FieldLogger }

func (l *logger) Noticef(format string, v ...any) { l.log.Debugf(format, v...) }
func (l *logger) Warnf(format string, v ...any) {
	// The in-process client's password is made at start and never
	// stored: the advice to hash it does not apply.
	if strings.HasPrefix(format, "Plaintext passwords detected") {
		l.log.Debugf(format, v...)
		return
	}
	l.log.Warnf(format, v...)
}
func (l *logger) Fatalf(format string, v ...any) { l.log.Errorf(format, v...) }
func (l *logger) Errorf(format string, v ...any) { l.log.Errorf(format, v...) }
func (l *logger) Debugf(format string, v ...any) { l.log.Debugf(format, v...) }
func (l *logger) Tracef(format string, v ...any) {}
