package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usageError marks errors that exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const usage = `usage: warren <command> [flags]

commands:
  keygen -o FILE          create a new Ed25519 key; prints its public key
  pubkey -k FILE          print the public key of a key file
  rendezvous -c FILE      run a rendezvous server (or: -listen ADDR [-alt-listen ADDR] [-key FILE] [-token-file FILE]);
                          the join token may also come from $WARREN_TOKEN; a node of a cluster adds
                          -cluster-listen HOST:PORT -cluster-peers nats://HOST:PORT,... (or -nats URL,...)
                          [-node NAME] [-public HOST:PORT]
  up -c FILE [-log FILE]  run the peer daemon (SIGHUP reloads the config)
  check -c FILE [-server]  validate a config (and that its ports are free and its key readable) without starting
  status [-admin ADDR] [-json]
                          show the running daemon's peers
  ping [-admin ADDR] [-c N] [-i DURATION] PEER
                          round trips over the link to PEER: path and RTT
  nat -rendezvous ADDR [-alt ADDR] [-json]
                          classify this machine's NAT against a rendezvous server
  service install -c FILE [-log FILE] | service uninstall
                          (Windows) run warren up as a Windows service
  demo [-once]            run a rendezvous server and two peers on loopback and show them working
  version                 print the version and the commit it was built from
  help COMMAND            a command's flags (also: warren COMMAND -h)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"keygen":     cmdKeygen,
		"pubkey":     cmdPubkey,
		"rendezvous": cmdRendezvous,
		"up":         cmdUp,
		"status":     cmdStatus,
		"ping":       cmdPing,
		"nat":        cmdNat,
		"check":      cmdCheck,
		"service":    cmdService,
		"demo":       cmdDemo,
		"version":    cmdVersion,
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && cmds[args[1]] != nil {
			// `warren help up` is `warren up -h`, on standard output.
			return run(ctx, []string{args[1], "-h"}, stdout, stdout)
		}
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version":
		args[0] = "version"
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "warren: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "warren %s: %v\n", args[0], err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
