package daemon

import (
	"cmp"
	"reflect"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
)

// reloadChanges names what a reload from old to cfg changes, as log
// fields: for peers (by name), exposed services (by name), SOCKS5
// listeners and forwards (by listen address), the entries added, removed
// and changed. An operator reads what the reload did, not counts.
func reloadChanges(old, cfg *config.Config) logrus.Fields {
	f := logrus.Fields{}
	diffEntries(f, "peers", old.Peers, cfg.Peers, func(p config.Peer) string { return p.Name })
	diffEntries(f, "exposes", old.Expose, cfg.Expose, func(e config.Expose) string { return e.Name })
	diffEntries(f, "socks", old.Socks, cfg.Socks, func(s config.Socks) string { return s.Listen })
	diffEntries(f, "forwards", old.Forward, cfg.Forward, func(fw config.Forward) string {
		return cmp.Or(fw.Protocol, "tcp") + " " + fw.Listen
	})
	return f
}

// diffEntries adds KIND_added, KIND_removed and KIND_changed to f, each
// a sorted list of the keys key gives, where there are any.
func diffEntries[T any](f logrus.Fields, kind string, old, cur []T, key func(T) string) {
	was := map[string]T{}
	for _, e := range old {
		was[key(e)] = e
	}
	var added, removed, changed []string
	for _, e := range cur {
		k := key(e)
		prev, ok := was[k]
		switch {
		case !ok:
			added = append(added, k)
		case !reflect.DeepEqual(prev, e):
			changed = append(changed, k)
		}
		delete(was, k)
	}
	for k := range was {
		removed = append(removed, k)
	}
	for suffix, keys := range map[string][]string{"_added": added, "_removed": removed, "_changed": changed} {
		if len(keys) > 0 {
			slices.Sort(keys)
			f[kind+suffix] = keys
		}
	}
}
