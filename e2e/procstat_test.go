package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procUsage is a process's resident memory and CPU time so far, read from
// /proc. A process started in a lab namespace runs under `ip netns exec`,
// which execs it in place, so the PID is the program's.
type procUsage struct {
	RSS int64         // bytes (VmRSS)
	CPU time.Duration // user + system
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// readUsage reads pid's procUsage.
func readUsage(t testing.TB, pid int) procUsage {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var u procUsage
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("pid %d VmRSS %q: %v", pid, rest, err)
			}
			u.RSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces; fields count from the
	// ')' that ends it. utime and stime are fields 14 and 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("pid %d: short /proc stat %q", pid, stat)
	}
	for _, s := range f[11:13] {
		ticks, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("pid %d stat: %v", pid, err)
		}
		u.CPU += time.Duration(ticks) * clockTick
	}
	return u
}

// usage reads the process's procUsage.
func (p *process) usage(t testing.TB) procUsage { return readUsage(t, p.cmd.Process.Pid) }

func mib(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }
