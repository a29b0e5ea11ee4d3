package labtest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// childEnv makes TestChild build labs and wait to be killed; the other
// tests run this test binary as that child.
const childEnv = "NATLAB_LABTEST_CHILD"

// TestChild, in a child process, builds two labs with busy hosts, prints
// their prefixes and waits for a signal or its deadline.
func TestChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		return // only meaningful as the child of the tests below
	}
	var prefixes []string
	for range 2 {
		lab := labtest.New(t, natlab.Config{})
		if _, err := lab.AddSite(context.Background(), "a", natlab.SymSeqBusy); err != nil {
			t.Fatal(err)
		}
		prefixes = append(prefixes, lab.Prefix())
	}
	fmt.Printf("READY %s\n", strings.Join(prefixes, " "))
	time.Sleep(time.Minute)
}

// startChild runs TestChild in a child process and returns it with the
// prefixes of its labs.
func startChild(t *testing.T, extra ...string) (*exec.Cmd, []string) {
	t.Helper()
	labtest.Require(t)
	args := append([]string{"-test.run=^TestChild$", "-test.v"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	// The child's output (a deadline panic is long) is shown only if the
	// test fails.
	var childErr strings.Builder
	cmd.Stderr = &childErr
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("child stderr:\n%s", childErr.String())
		}
	})
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			prefixes := strings.Fields(p)
			for _, p := range prefixes {
				t.Cleanup(func() { _ = natlab.Cleanup(p + "-") })
			}
			go func() { // drain the rest
				for sc.Scan() {
				}
			}()
			return cmd, prefixes
		}
	}
	t.Fatalf("child ended before its labs were ready: %v", cmd.Wait())
	return nil, nil
}

// waitGone waits for the child to end and checks that it left no
// namespace.
func waitGone(t *testing.T, cmd *exec.Cmd, prefixes []string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("child ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("child still running 30 s later")
	}
	checkGone(t, prefixes)
}

// checkGone checks that no namespace of the labs is left.
func checkGone(t *testing.T, prefixes []string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prefixes {
		if strings.Contains(string(out), p+"-") {
			t.Errorf("namespaces of lab %s left behind:\n%s", p, out)
		}
	}
}

// TestInterruptRemovesLabs sends SIGINT to a test binary holding two labs,
// as Ctrl-C during go test would, and checks that both labs are removed
// and the process still dies of the signal.
func TestInterruptRemovesLabs(t *testing.T) {
	t.Parallel()
	cmd, prefixes := startChild(t)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitGone(t, cmd, prefixes)
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("child exit %v, want death by SIGINT", cmd.ProcessState)
	}
}

// TestDeadlineRemovesLabs lets a test binary holding two labs run into its
// -test.timeout, which panics without running cleanups, and checks that
// the labs were removed before that.
func TestDeadlineRemovesLabs(t *testing.T) {
	t.Parallel()
	// The deadline must leave the child time to build its labs first: on
	// a loaded machine (CI runs the e2e lab beside this) that took over 5 s.
	cmd, prefixes := startChild(t, "-test.timeout=20s")
	waitGone(t, cmd, prefixes)
}

// TestReapOrphans kills a test binary holding two labs with SIGKILL, which
// nothing can intercept, and checks that Reap finds and removes the
// orphaned labs and leaves others alone.
func TestReapOrphans(t *testing.T) {
	t.Parallel()
	cmd, prefixes := startChild(t)
	mine := labtest.New(t, natlab.Config{})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	labs, err := natlab.Labs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	orphans := map[string]bool{}
	for _, li := range labs {
		if li.Orphaned {
			orphans[li.Prefix] = true
		}
		if li.Prefix == mine.Prefix() && (li.Owner != os.Getpid() || li.Orphaned) {
			t.Errorf("own lab listed as %+v", li)
		}
	}
	for _, p := range prefixes {
		if !orphans[p] {
			t.Errorf("lab %s of the killed child not listed as orphaned: %+v", p, labs)
		}
	}
	reaped, err := natlab.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reaped %v", reaped)
	checkGone(t, prefixes)
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), mine.Prefix()+"-inet") {
		t.Fatalf("Reap removed a lab in use: %v\n%s", err, out)
	}
}
