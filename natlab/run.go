package natlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// requiredTools are the programs a lab needs, with the Debian package that
// has each.
func requiredTools() [][2]string {
	return [][2]string{
		{"ip", "iproute2"},
		{"nft", "nftables"},
		{"conntrack", "conntrack"},
		{"bash", "bash"},       // the symseq-busy background host uses /dev/udp
		{"ethtool", "ethtool"}, // uplink emulators turn offloads off
	}
}

// Available returns nil if this process can build labs: it runs as root
// and ip, nft, conntrack, bash and ethtool are installed. Otherwise the error says
// everything that is missing and how to get it.
func Available() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	}
	var pkgs []string
	for _, t := range requiredTools() {
		if _, err := exec.LookPath(t[0]); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", t[0], t[1]))
			pkgs = append(pkgs, t[1])
		}
	}
	if err := platformSupported(); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) == 0 {
		return nil
	}
	msg := "natlab: kernel lab unavailable, missing " + strings.Join(missing, ", ")
	if len(pkgs) > 0 {
		msg += "; install with: apt-get install -y " + strings.Join(pkgs, " ")
	}
	return errors.New(msg)
}

// run runs a command and returns its combined output; the error names the
// command and carries its output, since ip and nft explain failures there.
func run(ctx context.Context, stdin string, name string, args ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if msg := bytes.TrimSpace(out); len(msg) > 0 {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return out, fmt.Errorf("%s %s: %w", name, shortArgs(args), err)
	}
	return out, nil
}

// shortArgs keeps error messages readable when an argument is a long
// script.
func shortArgs(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// ipn runs `ip -n NS args...`.
func ipn(ctx context.Context, ns string, args ...string) error {
	_, err := run(ctx, "", "ip", append([]string{"-n", ns}, args...)...)
	return err
}

// nft loads an nft script into namespace ns.
func nft(ctx context.Context, ns, script string) error {
	_, err := run(ctx, script, "ip", "netns", "exec", ns, "nft", "-f", "-")
	return err
}

// listNamespaces returns the names of all named network namespaces.
func listNamespaces(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "", "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// Lines look like "NAME" or "NAME (id: 3)".
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func namespaceGone(ns string) bool {
	_, err := os.Stat(netnsPath(ns))
	return errors.Is(err, os.ErrNotExist)
}

// netnsPath is where `ip netns add` mounts a named namespace.
func netnsPath(ns string) string { return "/run/netns/" + ns }
