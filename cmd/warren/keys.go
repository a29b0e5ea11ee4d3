package main

import (
	"context"
	"fmt"
	"io"

	"github.com/warren-p2p/warren/identity"
)

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
