package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// errHelp is a command's -h or --help: its usage went to its output, and
// warren exits 0, as other tools do.
var errHelp = errors.New("help requested")

// operands names what each command takes besides flags, for its usage line.
var operands = map[string]string{"ping": " PEER"}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("warren "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: warren %s [flags]%s\n\nflags:\n", name, operands[name])
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses the args of a command that takes no operands.
func parseFlags(fs *flag.FlagSet, args []string) error {
	operands, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(operands) > 0 {
		return usagef("unexpected argument %q", operands[0])
	}
	return nil
}

// parseArgs parses flags wherever they stand among args and returns the
// operands in order, so that `warren ping home -c 2` works as people type
// it; after "--" everything is an operand. The flag package alone stops at
// the first operand and would take "-c" for one.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(operands, rest...), nil
		}
		if len(rest) == 0 {
			return operands, nil
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
}
