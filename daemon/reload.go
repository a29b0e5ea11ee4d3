package daemon

import (
	"reflect"
	"slices"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
)

// Reload makes the running daemon follow cfg, a verified config: peers,
// exposes and access rights, SOCKS5 listeners and forwards. What the change
// does not touch keeps running: links to peers that stay (with their open
// streams) and listeners whose address stays. A removed peer's link is
// closed; a peer whose key changed is linked anew; a removed listener stops
// accepting, while its open connections run on. If anything in cfg cannot
// be applied (a listener that cannot be bound, say), nothing changes and
// the error says what. Settings that need a restart (key_file, admin_listen,
// [rendezvous], [link]) are left as they are and named in the returned
// list.
func (d *Daemon) Reload(cfg *config.Config) (restartOnly []string, err error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	newPeers, err := d.newPeers(cfg)
	if err != nil {
		return nil, err
	}
	policy, err := forward.NewPolicy(cfg.Peers, cfg.Expose, nil)
	if err != nil {
		return nil, err
	}
	if err := d.listeners.Reload(cfg.Socks, cfg.Forward); err != nil {
		return nil, err
	}
	d.exit.SetPolicy(policy)

	d.peersMu.Lock()
	var next, started, stopped []*peer
	for _, np := range newPeers {
		if old := d.byName[np.name]; old != nil && old.key == np.key {
			next = append(next, old)
			continue
		}
		next = append(next, np)
		started = append(started, np)
	}
	for _, old := range d.peers {
		if !slices.ContainsFunc(next, func(p *peer) bool { return p == old }) {
			stopped = append(stopped, old)
		}
	}
	d.peers = next
	d.byKey, d.byName = indexPeers(next)
	d.peersMu.Unlock()

	// Stop before starting, so that a peer whose key changed never has
	// two loops.
	for _, p := range stopped {
		p.stop()
		<-p.done
		p.log.Info("peer removed by reload; its link is closed")
	}
	for _, p := range started {
		p.log.Info("peer added by reload")
		d.startPeer(p)
	}
	changes := reloadChanges(d.applied, cfg)
	d.applied = cfg
	if len(changes) == 0 {
		d.log.Info("config reloaded; nothing that applies live changed")
	} else {
		d.log.WithFields(changes).Info("config reloaded")
	}
	return restartOnlyChanges(d.cfg, cfg), nil
}

// restartOnlyChanges names the settings that differ between the running
// config and cfg but take effect only at a restart.
func restartOnlyChanges(running, cfg *config.Config) []string {
	var keys []string
	for _, c := range []struct {
		key       string
		was, want any
	}{
		{"key_file", running.KeyFile, cfg.KeyFile},
		{"state_dir", running.StateDir, cfg.StateDir},
		{"admin_listen", running.AdminListen, cfg.AdminListen},
		{"log_format", running.LogFormat, cfg.LogFormat},
		{"access_log", running.AccessLog, cfg.AccessLog},
		{"[rendezvous]", running.Rendezvous, cfg.Rendezvous},
		{"[link]", running.Link, cfg.Link},
	} {
		if !reflect.DeepEqual(c.was, c.want) {
			keys = append(keys, c.key)
		}
	}
	return keys
}
