package natlab_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// rootRun runs a command in the root namespace and returns its output.
func rootRun(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// namespacesWith returns the named namespaces starting with prefix.
func namespacesWith(t testing.TB, prefix string) []string {
	t.Helper()
	out, err := rootRun(context.Background(), "ip", "netns", "list")
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var found []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			found = append(found, f[0])
		}
	}
	return found
}

// TestCleanupAfterFailure makes AddSite fail halfway (its host namespace
// name is already taken, so the router is built and then must be undone)
// and checks that the failure leaves the lab as it was and Close leaves
// nothing.
func TestCleanupAfterFailure(t *testing.T) {
	labtest.Require(t)
	t.Parallel()
	ctx := context.Background()
	lab, err := natlab.New(ctx, natlab.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	p := lab.Prefix()
	if _, err := lab.AddSite(ctx, "a", natlab.SymSeqBusy); err != nil {
		t.Fatal(err)
	}
	if out, err := rootRun(ctx, "ip", "netns", "add", p+"-b"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	before := namespacesWith(t, p+"-")
	if _, err := lab.AddSite(ctx, "b", natlab.SymSeqBusy); err == nil {
		t.Fatal("AddSite succeeded with its host namespace taken")
	} else {
		t.Logf("AddSite failed as planned: %v", err)
	}
	if after := namespacesWith(t, p+"-"); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("failed AddSite left %v, had %v", after, before)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	if left := namespacesWith(t, p); len(left) > 0 {
		t.Fatalf("after Close: %v", left)
	}
	if err := lab.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := lab.AddSite(ctx, "c", natlab.Cone); err == nil {
		t.Fatal("AddSite on a closed lab succeeded")
	}
}

// TestCleanupOnCancel cancels New and AddSite part way and checks that
// nothing is left.
func TestCleanupOnCancel(t *testing.T) {
	labtest.Require(t)
	t.Parallel()
	prefix := randomName("wlcancel")
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := natlab.New(cctx, natlab.Config{Prefix: prefix}); !errors.Is(err, context.Canceled) {
		t.Fatalf("New with a cancelled context: %v", err)
	}
	if left := namespacesWith(t, prefix); len(left) > 0 {
		t.Fatalf("after cancelled New: %v", left)
	}

	lab, err := natlab.New(context.Background(), natlab.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	// Cancel during the build of a double NAT (it takes well over 30 ms),
	// at many points, since a command killed just after it did its work
	// is the case that leaks.
	for d := time.Duration(0); d <= 30*time.Millisecond; d += time.Millisecond {
		tctx, cancel2 := context.WithTimeout(context.Background(), d)
		_, err := lab.AddDoubleNAT(tctx, "a", natlab.SymSeqBusy, natlab.SymSeqBusy)
		cancel2()
		if err == nil {
			t.Fatalf("AddDoubleNAT beat a %v deadline", d)
		}
		if got := namespacesWith(t, prefix+"-"); len(got) != 2 {
			t.Fatalf("after AddDoubleNAT cancelled at %v: %v, want only inet and srv", d, got)
		}
	}
	// Close while a build is in flight stops it.
	errc := make(chan error, 1)
	go func() {
		_, err := lab.AddDoubleNAT(context.Background(), "b", natlab.SymSeqBusy, natlab.SymRand)
		errc <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	<-errc // success or failure, both are fine: Close came after or during
	if left := namespacesWith(t, prefix); len(left) > 0 {
		t.Fatalf("after Close: %v", left)
	}
}

// TestCleanupFunc checks Cleanup's guard and that it removes by prefix.
func TestCleanupFunc(t *testing.T) {
	if err := natlab.Cleanup(""); err == nil {
		t.Fatal("Cleanup(\"\") succeeded")
	}
	labtest.Require(t)
	prefix := randomName("wlclean")
	if out, err := rootRun(context.Background(), "ip", "netns", "add", prefix+"-x"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := natlab.Cleanup(prefix + "-"); err != nil {
		t.Fatal(err)
	}
	if left := namespacesWith(t, prefix); len(left) > 0 {
		t.Fatalf("after Cleanup: %v", left)
	}
}

// randomName returns base plus 4 random hex digits, so that concurrent
// test runs do not collide.
func randomName(base string) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return base + hex.EncodeToString(b[:])
}
