package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frob"},
		{"up"},
		{"up", "bogus"},
		{"up", "open/cone"},
		{"up", "cone:0"},
		{"up", "-loss", "101", "cone"},
		{"up", "-prefix", "Bad-Prefix", "cone"},
		{"up", "-profile", "dialup", "cone"},
		{"up", "cone@dialup"},
		{"up", "-nosuchflag", "cone"},
		{"down", "a", "b"},
		{"list", "x"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("natlab %q: exit %d, want 2 (stderr %q)", args, code, errOut.String())
		}
		if !strings.Contains(errOut.String(), "usage: natlab up") {
			t.Errorf("natlab %q: stderr %q lacks the usage", args, errOut.String())
		}
	}
}

// TestUpListDown runs the CLI's whole life cycle against the kernel.
func TestUpListDown(t *testing.T) {
	labtest.Require(t)
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	prefix := "wlcli" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { _ = natlab.Cleanup(prefix + "-") })
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"up", "-prefix", prefix, "cone", "symseq-busy/cone:2", "open"}, &out, &errOut); code != 0 {
		t.Fatalf("up: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"lab " + prefix + " is up",
		"ip netns exec " + prefix + "-srv bash",
		"ip netns exec " + prefix + "-b2 bash",
		"symseq-busy/cone, public address 203.0.113.11",
		"natlab down " + prefix,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up output lacks %q:\n%s", want, out.String())
		}
	}
	// The lab outlives the command that made it, busy traffic included.
	busy := false
	for i := 0; i < 20 && !busy; i++ {
		o, _ := exec.Command("ip", "netns", "exec", prefix+"-b-cgn", "conntrack", "-L").CombinedOutput()
		busy = strings.Contains(string(o), "dport=40")
		time.Sleep(50 * time.Millisecond)
	}
	if !busy {
		t.Errorf("no busy traffic through the carrier NAT")
	}
	out.Reset()
	if code := run(ctx, []string{"list"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), prefix+"-b-cgn-busy") {
		t.Fatalf("list: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	if code := run(ctx, []string{"down", prefix}, &out, &errOut); code != 0 {
		t.Fatalf("down: exit %d: %s", code, errOut.String())
	}
	o, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil || strings.Contains(string(o), prefix) {
		t.Fatalf("after down: %v: %s", err, o)
	}
}

// TestUpProfile brings up a lab whose uplinks are emulated and checks that
// the emulators outlive the command and go with down.
func TestUpProfile(t *testing.T) {
	labtest.Require(t)
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	prefix := "wlcli" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { _ = natlab.Cleanup(prefix + "-") })
	ctx := context.Background()
	var out, errOut bytes.Buffer
	args := []string{"up", "-prefix", prefix, "-profile", "intercontinental", "cone", "open@lan"}
	if code := run(ctx, args, &out, &errOut); code != 0 {
		t.Fatalf("up: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"uplink intercontinental", "uplink lan"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up output lacks %q:\n%s", want, out.String())
		}
	}
	// Site a's uplink is emulated (50 ms each way), b's is not: a ping
	// from a's host to b's crosses one emulator, twice.
	// The first ping also waits for ARP.
	ping := func(n string) ([]byte, error) {
		return exec.Command("ip", "netns", "exec", prefix+"-a", "ping", "-n", "-q", "-c", n, "-i", "0.2", "203.0.113.11").CombinedOutput()
	}
	_, _ = ping("1")
	o, err := ping("3")
	if err != nil {
		t.Fatalf("ping: %v: %s", err, o)
	}
	m := regexp.MustCompile(`= ([0-9.]+)/([0-9.]+)/`).FindSubmatch(o)
	if m == nil {
		t.Fatalf("ping output without rtt: %s", o)
	}
	// The fastest of three: a loaded machine delays some pings further.
	if least, _ := strconv.ParseFloat(string(m[1]), 64); least < 100 || least > 110 {
		t.Errorf("RTT across one intercontinental uplink %.1f ms, want 100", least)
	}
	pids, err := exec.Command("ip", "netns", "pids", prefix+"-a-wan").Output()
	if err != nil || len(strings.Fields(string(pids))) != 1 {
		t.Fatalf("uplink namespace's processes: %q, %v", pids, err)
	}
	if code := run(ctx, []string{"down", prefix}, &out, &errOut); code != 0 {
		t.Fatalf("down: exit %d: %s", code, errOut.String())
	}
	pid := strings.TrimSpace(string(pids))
	for i := 0; i < 20; i++ {
		// This process started the emulator and never waits for it: it
		// stays a zombie here, where `natlab up` would have exited.
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if _, state, _ := strings.Cut(string(stat), ") "); err != nil || strings.HasPrefix(state, "Z") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("emulator %s still runs after down", pid)
}

// TestParseSiteV6Only: KIND+v6only, with the other suffixes, asks for an
// IPv6-only site.
func TestParseSiteV6Only(t *testing.T) {
	for arg, want := range map[string]bool{"symrand+v6only": true, "cone+v6only:2@lan": true, "cone:2@lan": false} {
		spec, err := parseSite(arg)
		if err != nil || spec.v6only != want || !spec.kind.Valid() {
			t.Errorf("parseSite(%q) = %+v, %v; want v6only %v", arg, spec, err, want)
		}
	}
	if _, err := parseSite("v6only"); err == nil {
		t.Error("parseSite accepted v6only without a kind")
	}
}
