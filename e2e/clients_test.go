package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sbinDirs are searched after PATH: sshd and dnsmasq live in /usr/sbin,
// which many users' PATH (and some CI images') lacks.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// needTool returns the absolute path of a program the test drives, looking
// in PATH and then in the sbin directories. Where it is missing the test
// skips with one loud line, except under CI (CI=true), where a silently
// skipped test would hide that nothing was tested: there it fails, as
// labtest.Require does for the lab. pkg is the Debian package that has it.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := name + " not found in PATH or " + strings.Join(sbinDirs, ", ") + "; install with: apt-get install -y " + pkg + " (./test.sh does, as root)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: required, not skipped)", msg)
	}
	t.Skipf("!!! SKIPPED: %s", msg)
	return ""
}

// inGroup makes cmd the leader of a new process group and has a cancelled
// context kill the whole group, so that a program's children (Chromium's
// zygote and renderers, sshd's sessions) die with it. WaitDelay bounds
// Wait when a leftover child still holds the output pipes.
func inGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second
}

// killGroup sends SIGKILL to cmd's process group; a group that has ended
// already is not an error.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// clientResult is how a client program run by runClient ended.
type clientResult struct {
	stdout, stderr string
	err            error // nil for exit status 0
	took           time.Duration
}

// tail returns the last n lines of s, for failure messages about chatty
// programs.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"[...]"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// runClient runs the program at path on m, in its own process group with
// env added to the test's environment, until it exits or max passes; then
// it kills whatever is left of the group. The caller judges the result.
func runClient(t testing.TB, m machine, max time.Duration, env []string, path string, args ...string) clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), max)
	defer cancel()
	cmd := m.Command(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	inGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	killGroup(cmd)
	if ctx.Err() != nil {
		err = errors.Join(err, errors.New(filepath.Base(path)+" killed after "+max.String()))
	}
	return clientResult{stdout: stdout.String(), stderr: stderr.String(), err: err, took: took}
}

// startService runs a long-lived program (a real server) at path on m in
// its own process group, with its output kept for failures like a warren
// daemon's. At cleanup it sends SIGTERM to the group, then SIGKILL after
// 5 s; unlike start, how the service exits is not checked.
func startService(t testing.TB, m machine, name, path string, args ...string) *process {
	t.Helper()
	p := launch(t, m, name, inGroup, path, args...)
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not stop within 5s of SIGTERM", name)
		}
		killGroup(p.cmd)
		<-p.done
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.output())
		}
	})
	return p
}
