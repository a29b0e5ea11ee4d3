package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/identity"
)

// cmdCheck validates a config without starting anything, as `sshd -t` and
// `frpc verify` do: the file, then what the machine must provide (a
// readable key, free listen ports). It lists every problem and exits 2, or
// says "ok" and exits 0.
func cmdCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("c", "", "config `FILE`")
	server := fs.Bool("server", false, "FILE is a rendezvous server's config (warren rendezvous -c)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usagef("-c FILE is required")
	}
	var problems config.Errors
	var summary string
	if *server {
		cfg, err := config.LoadServer(*path)
		if err != nil {
			return configErr(err)
		}
		problems = checkBinds(serverListens(cfg), func(key string, err error) *config.Error {
			return &config.Error{File: cfg.Path, Key: key, Msg: err.Error(), Err: err}
		})
		summary = fmt.Sprintf("a rendezvous server on %s", cfg.Listen)
	} else {
		cfg, err := config.Load(*path)
		if err != nil {
			return configErr(err)
		}
		if _, err := identity.Load(cfg.KeyFile); err != nil && !(cfg.CreateKey && errors.Is(err, iofs.ErrNotExist)) {
			if errors.Is(err, iofs.ErrNotExist) {
				err = fmt.Errorf("%w (create it with `warren keygen -o %s`, or set create_key = true)", err, cfg.KeyFile)
			}
			problems = append(problems, cfg.ErrorAt("key_file", err))
		}
		problems = append(problems, checkBinds(daemonListens(cfg), cfg.ErrorAt)...)
		summary = fmt.Sprintf("%d peers, %d SOCKS5 listeners, %d forwards, %d exposed services",
			len(cfg.Peers), len(cfg.Socks), len(cfg.Forward), len(cfg.Expose))
	}
	if len(problems) > 0 {
		return usageError{problems}
	}
	fmt.Fprintf(stdout, "%s: ok: %s\n", *path, summary)
	return nil
}

// listen is one address a config will bind.
type listen struct{ key, network, addr string }

func daemonListens(cfg *config.Config) []listen {
	var ls []listen
	if cfg.AdminListen != "" {
		ls = append(ls, listen{"admin_listen", "tcp", cfg.AdminListen})
	}
	for i, s := range cfg.Socks {
		ls = append(ls, listen{fmt.Sprintf("socks[%d].listen", i), "tcp", s.Listen})
	}
	for i, f := range cfg.Forward {
		network := "tcp"
		if f.Protocol == "udp" {
			network = "udp"
		}
		ls = append(ls, listen{fmt.Sprintf("forward[%d].listen", i), network, f.Listen})
	}
	return ls
}

// serverListens: the server binds TCP and UDP on each of its addresses.
func serverListens(cfg *config.Server) []listen {
	var ls []listen
	for _, l := range []listen{{"listen", "", cfg.Listen}, {"alt_listen", "", cfg.AltListen}} {
		if l.addr != "" {
			ls = append(ls, listen{l.key, "tcp", l.addr}, listen{l.key, "udp", l.addr})
		}
	}
	if cfg.FallbackListen != "" {
		ls = append(ls, listen{"fallback_listen", "tcp", cfg.FallbackListen})
	}
	if cfg.AdminListen != "" {
		ls = append(ls, listen{"admin_listen", "tcp", cfg.AdminListen})
	}
	return ls
}

// checkBinds binds each address for a moment and reports those that
// cannot be bound, placed by at.
func checkBinds(ls []listen, at func(key string, err error) *config.Error) config.Errors {
	var problems config.Errors
	for _, l := range ls {
		var err error
		if l.network == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", l.addr); err == nil {
				pc.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp", l.addr); err == nil {
				ln.Close()
			}
		}
		if err != nil {
			problems = append(problems, at(l.key, config.NewBindError(l.key, l.addr, err)))
		}
	}
	return problems
}
