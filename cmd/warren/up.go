package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/natsnode"
	"github.com/warren-p2p/warren/rendezvous"
)

// configErr turns config and key problems into usage errors (exit 2).
func configErr(err error) error {
	var ce config.Errors
	if errors.As(err, &ce) || errors.Is(err, identity.ErrInsecureKeyFile) {
		return usageError{err}
	}
	return err
}

func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("up", stderr)
	path := fs.String("c", "", "config `FILE`")
	logFile := fs.String("log", "", "append the log to `FILE` instead of standard error (for services)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usagef("-c FILE is required")
	}
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return usageError{fmt.Errorf("-log: %w", err)}
		}
		defer f.Close()
		stderr = f
	}
	return runDaemon(ctx, func(ctx context.Context, reloads <-chan struct{}) error {
		return up(ctx, *path, stderr, reloads)
	})
}

// up runs the daemon of the config at path until ctx ends, reloading the
// config on each receive from reloads (SIGHUP, or a Windows service's
// parameter change).
func up(ctx context.Context, path string, stderr io.Writer, reloads <-chan struct{}) error {
	cfg, err := config.Load(path)
	if err != nil {
		return configErr(err)
	}
	log, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	d, err := daemon.New(cfg, log)
	if err != nil {
		return usageError{err}
	}
	// The daemon runs on its own context: the signal starts Shutdown,
	// which lets open streams finish first.
	if err := d.Start(context.Background()); err != nil {
		// Every Start failure is a bind failure: a runtime failure (exit
		// 1) that a service manager retries, not a config to fix.
		return atConfigLine(cfg, err)
	}
	for ctx.Err() == nil {
		select {
		case <-reloads:
			reload(path, d, log)
		case <-ctx.Done():
		}
	}
	log.WithField("grace", shutdownGrace).Info("shutting down; open streams may finish")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	// A second signal cuts the grace short.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	go func() {
		select {
		case <-again:
			cancel()
		case <-sctx.Done():
		}
	}()
	return d.Shutdown(sctx)
}

// reload applies the config file again (SIGHUP). A config that does not
// load or cannot be applied is reported, and the running one stays.
func reload(path string, d *daemon.Daemon, log *logrus.Logger) {
	cfg, err := config.Load(path)
	if err == nil {
		var restartOnly []string
		if restartOnly, err = d.Reload(cfg); err != nil {
			err = atConfigLine(cfg, err)
		} else {
			if lv, perr := logrus.ParseLevel(cfg.LogLevel); perr == nil {
				setLevel(log, lv)
			}
			if len(restartOnly) > 0 {
				log.WithField("keys", strings.Join(restartOnly, ", ")).Warn("reload: these settings changed but take effect only after a restart")
			}
			return
		}
	}
	log.WithError(err).WithField("config", path).Error("reload failed; the running config stays in effect")
}

// atConfigLine points a listener that could not be bound at its line in
// the config, as "file:line: socks[0].listen: listen ADDR: address
// already in use"; other errors pass unchanged.
func atConfigLine(cfg *config.Config, err error) error {
	var be *config.BindError
	if errors.As(err, &be) {
		return cfg.ErrorAt(be.Key, be)
	}
	return err
}

// serverToken sets cfg.Token from the command line or the environment,
// which override the config file, in this order: -token, -token-file,
// $WARREN_TOKEN. set holds the flags given. visible reports a token given
// with -token, which any user can read in the process list.
func serverToken(cfg *config.Server, set map[string]bool, token, tokenFile string) (visible bool, err error) {
	switch {
	case set["token"] && set["token-file"]:
		return false, usagef("give -token or -token-file, not both")
	case set["token"]:
		cfg.Token = token
		return true, nil
	case set["token-file"]:
		cfg.Token, err = config.ReadTokenFile("-token-file", tokenFile)
		return false, err
	case os.Getenv(tokenEnv) != "":
		cfg.Token = strings.TrimSpace(os.Getenv(tokenEnv))
	}
	return false, nil
}

// tokenEnv is the environment variable the server reads its join token
// from, when no flag gives one.
const tokenEnv = "WARREN_TOKEN"

// shutdownGrace is how long open streams may finish after SIGINT/SIGTERM.
const shutdownGrace = 5 * time.Second

// serverLimit turns a server config limit (nil: the server's default, 0:
// no limit) into a ServerConfig one (0: the default, negative: none).
func serverLimit[T int | int64](v *T) T {
	switch {
	case v == nil:
		return 0
	case *v == 0:
		return -1
	}
	return *v
}

func cmdRendezvous(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rendezvous", stderr)
	path := fs.String("c", "", "config `FILE` (flags given too override it)")
	listen := fs.String("listen", "", "TCP control and UDP probe `ADDR` (default 0.0.0.0:7777)")
	alt := fs.String("alt-listen", "", "optional second `ADDR` (other IP and/or port) for NAT mapping tests")
	fallback := fs.String("fallback-listen", "", "optional further TCP `ADDR` served like -listen, for daemons on networks that let out only HTTPS (typically :443)")
	keyFile := fs.String("key", "", "private key `FILE`, created if missing (default rendezvous.key)")
	token := fs.String("token", "", "join token peers must present (visible to every user in ps: prefer -token-file or WARREN_TOKEN)")
	tokenFile := fs.String("token-file", "", "read the join token from `FILE` (its first line; readable by its owner only)")
	level := fs.String("log-level", "", "log `LEVEL`")
	relay := fs.Bool("relay", true, "relay traffic for peers that find no direct path")
	relayRate := fs.Int64("relay-rate", 0, "cap each peer's relayed traffic at `BYTES` per second (0: no cap; default 8 MiB/s)")
	limits := fs.Bool("limits", true, "per-source connection caps and rates against floods (off only for load tests)")
	natsURLs := fs.String("nats", "", "join a cluster through an existing NATS at `URL[,URL...]`")
	natsCreds := fs.String("nats-creds", "", "NATS credentials `FILE` for -nats")
	clusterListen := fs.String("cluster-listen", "", "join a cluster with NATS embedded, taking routes on `HOST:PORT`")
	clusterPeers := fs.String("cluster-peers", "", "other nodes' cluster addresses, `nats://HOST:PORT,...`")
	node := fs.String("node", "", "this node's `NAME` in the cluster (default: the host name)")
	public := fs.String("public", "", "`HOST:PORT` where peers reach this node (required in a cluster unless -listen names an IP)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Without -c, an empty config gives config's defaults.
	cfg, err := config.ParseServer("", nil)
	if *path != "" {
		cfg, err = config.LoadServer(*path)
	}
	if err != nil {
		return configErr(err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	override("listen", &cfg.Listen, *listen)
	override("alt-listen", &cfg.AltListen, *alt)
	override("fallback-listen", &cfg.FallbackListen, *fallback)
	override("key", &cfg.KeyFile, *keyFile)
	tokenVisible, err := serverToken(cfg, set, *token, *tokenFile)
	if err != nil {
		return configErr(err)
	}
	override("log-level", &cfg.LogLevel, *level)
	if set["relay"] {
		cfg.Relay = relay
	}
	if set["relay-rate"] {
		cfg.RelayRate = relayRate
	}
	if set["limits"] {
		cfg.Limits = limits
	}
	if set["nats"] {
		cfg.NATS = splitList(*natsURLs)
	}
	if set["nats-creds"] {
		if cfg.NATSCreds, err = filepath.Abs(*natsCreds); err != nil {
			return configErr(err)
		}
	}
	override("cluster-listen", &cfg.ClusterListen, *clusterListen)
	if set["cluster-peers"] {
		cfg.ClusterPeers = splitList(*clusterPeers)
	}
	override("node", &cfg.Node, *node)
	override("public", &cfg.Public, *public)
	if err := cfg.CheckCluster(); err != nil {
		return configErr(err)
	}
	if cfg.RelayRate != nil && *cfg.RelayRate < 0 {
		return usagef("-relay-rate must not be negative")
	}
	for _, a := range []string{cfg.Listen, cfg.AltListen, cfg.FallbackListen} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usagef("listen address %q: %v", a, err)
		}
	}

	log, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	if tokenVisible {
		log.Warn("-token is visible to every user of this machine (ps, /proc); use -token-file FILE or WARREN_TOKEN instead")
	}
	// A missing key is made now but written only once the server has
	// bound its ports, so a start that fails (a port in use) leaves no key
	// file behind.
	key, err := identity.Load(cfg.KeyFile)
	create := errors.Is(err, os.ErrNotExist)
	if create {
		key, err = identity.Generate()
	}
	if err != nil {
		return configErr(err)
	}
	var allow []identity.PublicKey
	for _, k := range cfg.AllowKeys { // verified by config
		pk, _ := identity.ParsePublicKey(k)
		allow = append(allow, pk)
	}
	scfg := rendezvous.ServerConfig{Key: key, Token: cfg.Token, AllowKeys: allow, Relay: *cfg.Relay, Log: log,
		RelayRate: serverLimit(cfg.RelayRate), RelayDailyBytes: serverLimit(cfg.RelayDailyBytes),
		MaxRelaysPerKey: serverLimit(cfg.MaxRelaysPerKey), FallbackListen: cfg.FallbackListen, RelayCapacity: cfg.RelayCapacity}
	if !*cfg.Limits {
		log.Warn("limits are off: one address can exhaust this server (for load tests only)")
		scfg = scfg.WithoutLimits()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if cfg.Clustered() {
		nc, closeNATS, err := joinCluster(cfg, log)
		if err != nil {
			return err
		}
		// After the server: it stops using the connection first.
		defer closeNATS()
		if err := rendezvous.CheckNodeName(ctx, nc, cfg.Node); err != nil {
			return err
		}
		scfg.Cluster = &rendezvous.ClusterConfig{Node: cfg.Node, Public: cfg.Public, NATS: nc}
		log.WithFields(logrus.Fields{"node": cfg.Node, "public": cfg.Public}).Info("clustered: this server is one node of a cluster")
	}
	srv, err := rendezvous.NewServer(scfg)
	if err != nil {
		return err
	}
	var saveErr error
	err = srv.ListenAndServe(ctx, cfg.Listen, cfg.AltListen, func(bound []net.Addr) {
		if create {
			if saveErr = key.Save(cfg.KeyFile); saveErr != nil {
				stop()
				return
			}
			log.WithField("key_file", cfg.KeyFile).Info("created a new server key")
		}
		fmt.Fprintf(stdout, "rendezvous public key: %s\n", key.Public())
		for _, a := range bound {
			fmt.Fprintf(stdout, "listening on %s %s\n", a.Network(), a)
		}
	})
	if saveErr != nil {
		return fmt.Errorf("save the new server key: %w", saveErr)
	}
	// A port in use is a runtime failure (exit 1), not a bad config: a
	// service manager should try again.
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// joinCluster connects this node to its cluster's NATS: an embedded
// server routed to the other nodes', or an existing deployment. The
// function returned closes what it opened.
func joinCluster(cfg *config.Server, log logrus.FieldLogger) (*nats.Conn, func(), error) {
	if cfg.ClusterListen == "" {
		nc, err := natsnode.Dial(cfg.NATS, cfg.NATSCreds, cfg.Node)
		if err != nil {
			return nil, nil, err
		}
		return nc, nc.Close, nil
	}
	if cfg.ClusterSecret == "" {
		log.Warn("cluster routes are open to anyone who reaches cluster_listen: keep it on a private network, or set cluster_secret_file on every node")
	}
	emb, err := natsnode.Embed(natsnode.EmbedConfig{Node: cfg.Node, Listen: cfg.ClusterListen, Peers: cfg.ClusterPeers,
		User: clusterUser(cfg.ClusterSecret), Password: cfg.ClusterSecret, Log: log})
	if err != nil {
		return nil, nil, err
	}
	log.WithField("cluster_listen", emb.ClusterAddr()).Info("embedded NATS takes cluster routes")
	return emb.Conn(), emb.Close, nil
}

// clusterUser is the route user name that goes with a cluster secret.
func clusterUser(secret string) string {
	if secret == "" {
		return ""
	}
	return "warren"
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
