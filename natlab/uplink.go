package natlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// An emulated uplink: the site's edge device (a router's WAN, an Open
// host's eth0) is not plugged into the internet bridge directly but into
// wireIn, one end of a veth pair in the uplink's own namespace
// (PREFIX-SITE-wan); its other device, wireOut, is plugged into the
// bridge. The helper process (wire_linux.go) moves frames between the two.
const (
	wireIn       = "in0"
	wireOut      = "out0"
	wireEnv      = "NATLAB_UPLINK_EMULATOR"
	wireOwned    = "owned"
	wireDetached = "detached"
	wireNice     = -10
)

// uplink is the Lab's handle on one emulator.
type uplink struct {
	ns string

	// mu serialises exchanges with the helper and guards the fields after
	// it.
	mu      sync.Mutex
	profile Profile
	ctl     *os.File // the helper's standard input
	replies *os.File // its standard output
	reader  *bufio.Reader
	broken  error // set when an exchange failed half way
}

// SiteOption changes how AddSite and AddDoubleNAT build a site.
type SiteOption func(*siteOptions)

type siteOptions struct {
	profile Profile
	v6only  bool // see IPv6Only
}

// WithProfile gives the site's uplink profile p instead of the lab's
// Config.Profile.
func WithProfile(p Profile) SiteOption {
	return func(o *siteOptions) { o.profile = p }
}

// siteOptions applies opts over the lab's defaults and checks them.
func (l *Lab) siteOptions(opts []SiteOption) (siteOptions, error) {
	o := siteOptions{profile: l.cfg.Profile}
	for _, opt := range opts {
		opt(&o)
	}
	return o, o.profile.Verify()
}

// newUplink returns the emulator to build for a site, or nil if its
// profile wants none.
func (l *Lab) newUplink(site string, p Profile) *uplink {
	if !p.Emulated() {
		return nil
	}
	return &uplink{ns: l.prefix + "-" + site + "-wan", profile: p}
}

// spliceLocked connects device dev of namespace ns to bridge brDev of
// namespace brNS through the uplink's namespace, with offloads off on
// every device whose frames the emulator reads or writes (otherwise it
// would see 64 KiB GSO frames and frames with checksums left to the
// hardware).
func (l *Lab) spliceLocked(ctx context.Context, ns, dev, brNS, brDev string, u *uplink) error {
	if err := l.addNamespaceLocked(ctx, u.ns); err != nil {
		return err
	}
	if _, err := run(ctx, "", "ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", wireIn, "netns", u.ns); err != nil {
		return err
	}
	port := l.bridgePortLocked(brNS)
	if _, err := run(ctx, "", "ip", "link", "add", wireOut, "netns", u.ns, "type", "veth", "peer", "name", port, "netns", brNS); err != nil {
		return err
	}
	if err := ipn(ctx, brNS, "link", "set", port, "master", brDev, "up"); err != nil {
		return err
	}
	for _, d := range []string{wireIn, wireOut} {
		if err := ipn(ctx, u.ns, "link", "set", d, "promisc", "on", "up"); err != nil {
			return err
		}
	}
	for _, nd := range [][2]string{{ns, dev}, {u.ns, wireIn}, {u.ns, wireOut}, {brNS, port}} {
		if _, err := run(ctx, "", "ip", "netns", "exec", nd[0], "ethtool", "-K", nd[1],
			"tso", "off", "gso", "off", "gro", "off", "tx", "off"); err != nil {
			return err
		}
	}
	return nil
}

// startUplinkLocked starts the emulator's helper process and waits until
// its first profile is in force.
func (l *Lab) startUplinkLocked(ctx context.Context, u *uplink) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("uplink %s: %w", u.ns, err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return err
	}
	mode := wireOwned
	// Niced up: on a machine busy with the lab's own traffic and tests,
	// the wire should be the last to wait for a CPU, since its waiting
	// adds to every delay it emulates. Its threads inherit this.
	cmd := exec.Command("ip", "netns", "exec", u.ns, "nice", "-n", strconv.Itoa(wireNice), exe)
	if l.cfg.Detach {
		mode = wireDetached
	} else {
		cmd.Stderr = os.Stderr // only failures are written there
	}
	cmd.Env = append(os.Environ(), wireEnv+"="+mode)
	cmd.Stdin, cmd.Stdout = ctlR, repW
	cmd.SysProcAttr = ownSession()
	err = cmd.Start()
	ctlR.Close()
	repW.Close()
	u.ctl, u.replies, u.reader = ctlW, repR, bufio.NewReader(repR)
	l.uplinks = append(l.uplinks, u)
	if err != nil {
		return fmt.Errorf("uplink %s: %w", u.ns, err)
	}
	l.ownLocked(cmd)
	if err := u.apply(ctx, u.profile); err != nil {
		return fmt.Errorf("uplink %s: %w", u.ns, err)
	}
	return nil
}

// control is one line on the helper's standard input: a profile to put
// in force, or a request for the counters. The helper answers each with
// one line: "ok", "ok " and the counters as JSON, or "error: " and why.
type control struct {
	Profile *Profile `json:",omitempty"`
	Stats   bool     `json:",omitempty"`
}

// apply sends p to the helper and waits for it to be in force.
func (u *uplink) apply(ctx context.Context, p Profile) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	answer, err := u.callLocked(ctx, control{Profile: &p})
	if err != nil {
		return err
	}
	if answer != "" {
		return fmt.Errorf("emulator answered %q", answer)
	}
	u.profile = p
	return nil
}

// stats asks the helper for its counters.
func (u *uplink) stats(ctx context.Context) (UplinkStats, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var st UplinkStats
	answer, err := u.callLocked(ctx, control{Stats: true})
	if err == nil {
		err = json.Unmarshal([]byte(answer), &st)
	}
	return st, err
}

// callLocked sends c to the helper and returns what its answer says after
// "ok".
func (u *uplink) callLocked(ctx context.Context, c control) (string, error) {
	line, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	if u.broken != nil {
		return "", u.broken
	}
	_ = u.replies.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = u.replies.SetReadDeadline(time.Now()) })
	defer stop()
	answer, err := u.exchange(append(line, '\n'))
	if err != nil {
		// A late answer would be taken for the next one's.
		u.broken = fmt.Errorf("emulator out of step after: %w", err)
		return "", err
	}
	if rest, ok := strings.CutPrefix(answer, "error: "); ok {
		return "", fmt.Errorf("emulator: %s", rest)
	}
	if answer != "ok" && !strings.HasPrefix(answer, "ok ") {
		return "", fmt.Errorf("emulator answered %q", answer)
	}
	return strings.TrimPrefix(strings.TrimPrefix(answer, "ok"), " "), nil
}

func (u *uplink) exchange(line []byte) (string, error) {
	if _, err := u.ctl.Write(line); err != nil {
		return "", fmt.Errorf("emulator gone: %w", err)
	}
	answer, err := u.reader.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("emulator did not answer: %w", err)
	}
	return strings.TrimSpace(answer), nil
}

func (u *uplink) close() {
	u.ctl.Close()
	u.replies.Close()
}

// UplinkStats returns what the site's uplink emulator has done so far:
// frames passed and dropped by cause, each way. It fails for a site
// without an emulator.
func (s *Site) UplinkStats(ctx context.Context) (UplinkStats, error) {
	if s.uplink == nil {
		return UplinkStats{}, fmt.Errorf("natlab: site %s: uplink stats: no emulator (profile lan)", s.name)
	}
	ctx, stop := s.lab.op(ctx)
	defer stop()
	st, err := s.uplink.stats(ctx)
	if err != nil {
		return st, fmt.Errorf("natlab: site %s: uplink stats: %w", s.name, err)
	}
	return st, nil
}

// Profile returns the profile in force on the site's uplink.
func (s *Site) Profile() Profile {
	if s.uplink == nil {
		p, _ := LookupProfile("lan")
		return p
	}
	s.uplink.mu.Lock()
	defer s.uplink.mu.Unlock()
	return s.uplink.profile
}

// SetProfile changes what the site's uplink does from now on; packets
// already held keep their release times. The site must have been built
// with an emulated profile (any but lan; "clean" impairs nothing); the
// lan profile here makes the emulator pass everything.
func (s *Site) SetProfile(ctx context.Context, p Profile) error {
	if s.uplink == nil {
		return fmt.Errorf("natlab: site %s: set profile %s: built without an emulator (profile lan); build it with another, such as clean", s.name, p.Name)
	}
	if err := p.Verify(); err != nil {
		return err
	}
	ctx, stop := s.lab.op(ctx)
	defer stop()
	if err := s.uplink.apply(ctx, p); err != nil {
		return fmt.Errorf("natlab: site %s: set profile %s: %w", s.name, p.Name, err)
	}
	return nil
}

// SetProfile changes the profile of every site that has an emulator (see
// Site.SetProfile), for instance to move a whole cell from broadband to
// mobile in the middle of a test. Sites built without one are left alone.
func (l *Lab) SetProfile(ctx context.Context, p Profile) error {
	var errs []error
	for _, s := range l.Sites() {
		if s.uplink != nil {
			errs = append(errs, s.SetProfile(ctx, p))
		}
	}
	return errors.Join(errs...)
}
