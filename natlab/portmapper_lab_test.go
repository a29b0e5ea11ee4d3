//go:build linux

package natlab_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestPortMapperOwned: a site's miniupnpd belongs to the lab, and Close
// leaves no process behind; a router gets one at most, and a site without
// a single router none.
func TestPortMapperOwned(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab := labtest.New(t, natlab.Config{})
	site, err := lab.AddSite(ctx, "a", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.StartPortMapper(ctx, natlab.PortMapAll); err != nil {
		t.Fatal(err)
	}
	out, err := site.Exec(ctx, "ip", "netns", "pids", site.Routers()[0].Name())
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, pid := range strings.Fields(string(out)) {
		if comm, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(comm)) == "miniupnpd" {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("router runs %d miniupnpd (pids in it: %s)", len(pids), out)
	}
	if err := site.StartPortMapper(ctx, natlab.PortMapPCP); err == nil || !strings.Contains(err.Error(), "one already") {
		t.Fatalf("a second port mapper on one router: %v", err)
	}
	open, err := lab.AddSite(ctx, "b", natlab.Open)
	if err != nil {
		t.Fatal(err)
	}
	if err := open.StartPortMapper(ctx, natlab.PortMapAll); err == nil {
		t.Fatal("an Open site got a port mapper")
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + pids[0]); err == nil {
		t.Fatalf("miniupnpd %s outlived the lab", pids[0])
	}
}
