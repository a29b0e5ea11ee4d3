package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/warren-p2p/warren/identity"
)

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("warren "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func cmdKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", stderr)
	out := fs.String("o", "", "write the new private key to `FILE` (mode 0600)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("-o FILE is required")
	}
	k, err := identity.Generate()
	if err != nil {
		return err
	}
	if err := k.Save(*out); err != nil {
		return err
	}
	fmt.Fprintln(stdout, k.Public())
	return nil
}

func cmdPubkey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pubkey", stderr)
	in := fs.String("k", "", "private key `FILE`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *in == "" {
		return usagef("-k FILE is required")
	}
	k, err := identity.Load(*in)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintln(stdout, k.Public())
	return nil
}
