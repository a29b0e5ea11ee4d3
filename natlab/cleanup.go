package natlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Cleanup deletes every network namespace whose name starts with prefix,
// after killing the processes inside it (a namespace whose processes live
// on is not freed). It is for `natlab down` and for recovering from a crash
// that skipped Lab.Close. prefix must not be empty.
func Cleanup(prefix string) error {
	if prefix == "" {
		return errors.New("natlab: cleanup: empty prefix would match every namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	names, err := listNamespaces(ctx)
	if err != nil {
		return fmt.Errorf("natlab: cleanup %s: %w", prefix, err)
	}
	var errs []error
	for _, ns := range names {
		if strings.HasPrefix(ns, prefix) {
			errs = append(errs, deleteNamespace(ctx, ns))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("natlab: cleanup %s: %w", prefix, err)
	}
	return nil
}

// deleteNamespace kills the processes in ns and deletes it. A namespace
// that is already gone is not an error.
func deleteNamespace(ctx context.Context, ns string) error {
	out, err := run(ctx, "", "ip", "netns", "pids", ns)
	if err != nil {
		if namespaceGone(ns) {
			return nil
		}
		return err
	}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		// Never this process: its main thread can be inside a lab
		// namespace for a moment while Host.Do runs on it.
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill() // already gone is fine
		}
	}
	if _, err := run(ctx, "", "ip", "netns", "delete", ns); err != nil && !namespaceGone(ns) {
		return err
	}
	return nil
}

// ownerAlias is the hub's alias recording the lab's owner process (0: a
// detached lab, owned by nobody).
func ownerAlias(pid int) string { return "natlab owner=" + strconv.Itoa(pid) }

// LabInfo describes a lab found on the machine.
type LabInfo struct {
	Prefix     string
	Namespaces []string // sorted
	// Owner is the process that will Close the lab, or 0 for a detached
	// lab (natlab up) or one whose owner is unknown.
	Owner int
	// Orphaned reports that Owner has exited without closing the lab.
	Orphaned bool
}

// Labs returns every lab on the machine, found by its PREFIX-inet
// namespace, sorted by prefix.
func Labs(ctx context.Context) ([]LabInfo, error) {
	names, err := listNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("natlab: labs: %w", err)
	}
	slices.Sort(names)
	var labs []LabInfo
	for _, ns := range names {
		prefix, ok := strings.CutSuffix(ns, "-inet")
		if !ok || prefix == "" {
			continue
		}
		li := LabInfo{Prefix: prefix}
		for _, n := range names {
			if strings.HasPrefix(n, prefix+"-") {
				li.Namespaces = append(li.Namespaces, n)
			}
		}
		out, err := run(ctx, "", "ip", "-n", ns, "-o", "link", "show", hubDev)
		if _, owner, ok := strings.Cut(string(out), "alias natlab owner="); err == nil && ok {
			if f := strings.Fields(owner); len(f) > 0 {
				li.Owner, _ = strconv.Atoi(f[0])
			}
		}
		li.Orphaned = li.Owner > 0 && !processExists(li.Owner)
		labs = append(labs, li)
	}
	return labs, nil
}

// Reap removes every orphaned lab: one whose owner process has exited
// without closing it (killed, or crashed), and returns their prefixes.
// Labs in use and detached labs are left alone. labtest calls it before
// building a lab, so that labs leaked by killed test runs do not pile up.
func Reap(ctx context.Context) ([]string, error) {
	labs, err := Labs(ctx)
	if err != nil {
		return nil, err
	}
	var reaped []string
	var errs []error
	for _, li := range labs {
		if li.Orphaned {
			errs = append(errs, Cleanup(li.Prefix+"-"))
			reaped = append(reaped, li.Prefix)
		}
	}
	return reaped, errors.Join(errs...)
}
