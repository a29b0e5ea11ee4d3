package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warren-p2p/warren/natlab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: natlab up [-prefix P] [-profile NAME] [-loss PCT] [-udp-timeout DUR] [-ipv6] [-q] SITE...
       natlab down [PREFIX]
       natlab list
       natlab kinds
       natlab profiles
SITE is KIND, or OUTER/INNER for a double NAT, optionally with :N for N hosts
and @PROFILE for its uplink's profile (default: -profile's, or lan);
with -ipv6, KIND+v6only is a site with IPv6 alone (no IPv4 route out);
KIND is one of: %s. Sites are named a, b, c, ...
Example: natlab up -profile mobile cone symseq-busy symseq/cone:2@lan
         natlab up -ipv6 symrand symrand symrand+v6only
`

// errUsage marks errors that exit 2.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "natlab: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		fmt.Fprintf(stderr, usage, kindNames())
		return 2
	default:
		// Library errors already start with "natlab: ".
		fmt.Fprintf(stderr, "natlab: %v\n", strings.TrimPrefix(err.Error(), "natlab: "))
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "up":
		return up(ctx, args[1:], stdout)
	case "down":
		if len(args) > 2 {
			return fmt.Errorf("%w: down takes at most one PREFIX", errUsage)
		}
		prefix := ""
		if len(args) == 2 {
			prefix = strings.TrimSuffix(args[1], "-")
			if prefix == "" {
				return fmt.Errorf("%w: empty PREFIX", errUsage)
			}
		}
		return down(prefix, stdout)
	case "list":
		if len(args) > 1 {
			return fmt.Errorf("%w: list takes no arguments", errUsage)
		}
		return list(ctx, stdout)
	case "kinds":
		fmt.Fprintln(stdout, kindNames())
		return nil
	case "profiles":
		for _, name := range natlab.Profiles() {
			fmt.Fprintf(stdout, "%-17s %s\n", name, natlab.DescribeProfile(name))
		}
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(stdout, usage, kindNames())
		return nil
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

func kindNames() string {
	var s []string
	for _, k := range append(natlab.Kinds(), natlab.RestrictedKinds()...) {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

// siteSpec is one parsed SITE argument.
type siteSpec struct {
	kind, inner natlab.Kind // inner != "" for a double NAT
	hosts       int
	profile     *natlab.Profile // nil: the -profile flag's
	v6only      bool            // +v6only: natlab.IPv6Only
}

func parseSite(arg string) (siteSpec, error) {
	spec := siteSpec{hosts: 1}
	rest, profile, hasProfile := strings.Cut(arg, "@")
	if hasProfile {
		p, err := natlab.LookupProfile(profile)
		if err != nil {
			return spec, fmt.Errorf("%w: site %q: %v", errUsage, arg, strings.TrimPrefix(err.Error(), "natlab: "))
		}
		spec.profile = &p
	}
	kinds, n, hasN := strings.Cut(rest, ":")
	if hasN {
		h, err := strconv.Atoi(n)
		if err != nil || h < 1 || h > 100 {
			return spec, fmt.Errorf("%w: site %q: host count %q: want 1-100", errUsage, arg, n)
		}
		spec.hosts = h
	}
	kinds, spec.v6only = strings.CutSuffix(kinds, "+v6only")
	outer, inner, double := strings.Cut(kinds, "/")
	spec.kind = natlab.Kind(outer)
	if !spec.kind.Valid() {
		return spec, fmt.Errorf("%w: site %q: unknown kind %q", errUsage, arg, outer)
	}
	if double {
		spec.inner = natlab.Kind(inner)
		if !spec.inner.Valid() {
			return spec, fmt.Errorf("%w: site %q: unknown kind %q", errUsage, arg, inner)
		}
		if spec.kind == natlab.Open || spec.inner == natlab.Open {
			return spec, fmt.Errorf("%w: site %q: a double NAT needs two NAT kinds", errUsage, arg)
		}
	}
	return spec, nil
}

func up(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := natlab.Config{Detach: true}
	fs.StringVar(&cfg.Prefix, "prefix", "", "namespace name prefix (default wl + 4 random hex digits)")
	fs.IntVar(&cfg.LossPercent, "loss", 0, "random loss on the internet segment, percent")
	fs.DurationVar(&cfg.UDPTimeout, "udp-timeout", 0, "conntrack UDP timeout in routers (0: kernel default)")
	fs.BoolVar(&cfg.IPv6, "ipv6", false, "dual-stack: a routed 2001:db8:i::/64 per site behind a stateful firewall (no NAT66)")
	profile := fs.String("profile", "lan", "every site's uplink profile (natlab profiles lists them)")
	quiet := fs.Bool("q", false, "print only the prefix")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: up: %v", errUsage, err)
	}
	var err error
	if cfg.Profile, err = natlab.LookupProfile(*profile); err != nil {
		return fmt.Errorf("%w: up: %v", errUsage, strings.TrimPrefix(err.Error(), "natlab: "))
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: up needs at least one SITE", errUsage)
	}
	if fs.NArg() > 26 {
		return fmt.Errorf("%w: up takes at most 26 sites", errUsage)
	}
	var specs []siteSpec
	for _, a := range fs.Args() {
		s, err := parseSite(a)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	if err := cfg.Verify(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	lab, err := natlab.New(ctx, cfg)
	if err != nil {
		return err
	}
	sites, err := addSites(ctx, lab, specs)
	if err != nil {
		// Interrupted or failed: leave nothing behind.
		return errors.Join(err, lab.Close())
	}
	if *quiet {
		fmt.Fprintln(stdout, lab.Prefix())
		return nil
	}
	describe(stdout, lab, cfg, sites)
	return nil
}

// addSites adds a site named a, b, c, ... to lab for each spec.
func addSites(ctx context.Context, lab *natlab.Lab, specs []siteSpec) ([]*natlab.Site, error) {
	var sites []*natlab.Site
	for i, spec := range specs {
		name := string(rune('a' + i))
		var opts []natlab.SiteOption
		if spec.profile != nil {
			opts = append(opts, natlab.WithProfile(*spec.profile))
		}
		if spec.v6only {
			opts = append(opts, natlab.IPv6Only())
		}
		var s *natlab.Site
		var err error
		if spec.inner != "" {
			s, err = lab.AddDoubleNAT(ctx, name, spec.kind, spec.inner, opts...)
		} else {
			s, err = lab.AddSite(ctx, name, spec.kind, opts...)
		}
		for h := 2; err == nil && h <= spec.hosts; h++ {
			_, err = s.AddHost(ctx, name+strconv.Itoa(h))
		}
		if err != nil {
			return nil, err
		}
		sites = append(sites, s)
	}
	return sites, nil
}

func describe(w io.Writer, lab *natlab.Lab, cfg natlab.Config, sites []*natlab.Site) {
	timeout := "kernel default"
	if cfg.UDPTimeout > 0 {
		timeout = cfg.UDPTimeout.String()
	}
	fmt.Fprintf(w, "lab %s is up (internet %s, loss %d%%, UDP timeout %s)\n\n",
		lab.Prefix(), lab.Internet(), cfg.LossPercent, timeout)
	srv := lab.Server()
	fmt.Fprintf(w, "server  %-28s ip netns exec %s bash\n", joinAddrs(srv), srv.Name())
	for _, s := range sites {
		kind := string(s.Kind())
		if s.InnerKind() != "" {
			kind += "/" + string(s.InnerKind())
		}
		uplink := s.Profile().Name
		if d := natlab.DescribeProfile(uplink); d != "" && uplink != "lan" {
			uplink += " (" + d + ")"
		}
		fmt.Fprintf(w, "\nsite %s  %s, public address %s, uplink %s\n", s.Name(), kind, s.PublicAddr(), uplink)
		for _, r := range s.Routers() {
			fmt.Fprintf(w, "  router  %-26s ip netns exec %s bash\n", joinAddrs(r), r.Name())
		}
		for _, h := range s.Hosts() {
			fmt.Fprintf(w, "  host    %-26s ip netns exec %s bash\n", joinAddrs(h), h.Name())
		}
	}
	fmt.Fprintf(w, "\nremove with: natlab down %s\n", lab.Prefix())
}

func joinAddrs(h *natlab.Host) string {
	var s []string
	for _, a := range h.Addrs() {
		s = append(s, a.String())
	}
	return strings.Join(s, " ")
}

func down(prefix string, stdout io.Writer) error {
	if prefix != "" {
		if err := natlab.Cleanup(prefix + "-"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed lab %s\n", prefix)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	labs, err := natlab.Labs(ctx)
	if err != nil {
		return err
	}
	// Default-prefix namespaces go even without their -inet namespace
	// (a lab half removed by hand).
	errs := []error{natlab.Cleanup(natlab.DefaultPrefix)}
	for _, li := range labs {
		errs = append(errs, natlab.Cleanup(li.Prefix+"-"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "removed every natlab namespace")
	return nil
}

func list(ctx context.Context, stdout io.Writer) error {
	labs, err := natlab.Labs(ctx)
	if err != nil {
		return err
	}
	if len(labs) == 0 {
		fmt.Fprintln(stdout, "no labs")
		return nil
	}
	for _, li := range labs {
		owner := "standing (natlab up)"
		switch {
		case li.Orphaned:
			owner = fmt.Sprintf("orphaned: owner process %d is gone", li.Owner)
		case li.Owner > 0:
			owner = fmt.Sprintf("owned by process %d", li.Owner)
		}
		fmt.Fprintf(stdout, "lab %s, %s\n", li.Prefix, owner)
		for _, ns := range li.Namespaces {
			fmt.Fprintf(stdout, "  %-24s %s\n", ns, addrsOf(ctx, ns))
		}
	}
	return nil
}

// addrsOf returns the IPv4 addresses in namespace ns, lo excluded.
func addrsOf(ctx context.Context, ns string) string {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-4", "-o", "addr", "show").Output()
	if err != nil {
		return "?"
	}
	var addrs []string
	for _, line := range strings.Split(string(out), "\n") {
		// "2: eth0    inet 203.0.113.2/24 brd ... scope global eth0..."
		f := strings.Fields(line)
		if len(f) >= 4 && f[1] != "lo" && f[2] == "inet" {
			addrs = append(addrs, f[3])
		}
	}
	return strings.Join(addrs, " ")
}
