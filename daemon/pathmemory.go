package daemon

import (
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/pathmemory"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/session"
)

// pathMemoryFile is the path memory's file in state_dir for the daemon
// whose public key is key: named after the key, so that daemons sharing a
// directory keep apart, and a new identity starts with no memory.
func pathMemoryFile(key identity.PublicKey) string {
	return "paths-" + key.String()[:12] + ".json"
}

// pathMemory is the daemon's use of pathmemory: which path each peer's
// sessions won from this network, recorded at every link and consulted
// when a session starts.
type pathMemory struct {
	m   *pathmemory.Memory
	log logrus.FieldLogger
	// warned is set once a write failed: later failures log at debug
	// (a read-only state directory would otherwise warn at every link).
	warned atomic.Bool
}

// newPathMemory opens the memory of the daemon with key self in dir. A
// file that cannot be read is said once and replaced: it is a cache, no
// reason not to start.
func newPathMemory(dir string, self identity.PublicKey, log logrus.FieldLogger) (*pathMemory, error) {
	m, err := pathmemory.New(pathmemory.Config{File: filepath.Join(dir, pathMemoryFile(self))})
	if err != nil {
		return nil, err
	}
	if err := m.Load(time.Now()); err != nil {
		log.WithError(err).Warn("path memory discarded; starting without it")
	}
	return &pathMemory{m: m, log: log}, nil
}

// memoryKey is what a session's result is remembered under: the peer,
// and both ends' networks (public address and NAT type) as the session
// saw them; ok is false when either is unknown.
func memoryKey(s *session.Session) (k pathmemory.Key, ok bool) {
	if !s.SelfNAT.PublicIP.IsValid() || !s.PeerPublic.IsValid() {
		return k, false
	}
	return pathmemory.Key{
		Peer:    s.Peer.String(),
		Self:    s.SelfNAT.PublicIP.String() + " " + natLabel(s.SelfNAT),
		PeerNet: s.PeerPublic.Addr().String() + " " + natLabel(s.PeerNAT),
	}, true
}

// recall returns what the last session between these networks, with the
// same strategy, ended with.
func (pm *pathMemory) recall(s *session.Session) (pathmemory.Entry, bool) {
	k, ok := memoryKey(s)
	if !ok {
		return pathmemory.Entry{}, false
	}
	e, ok := pm.m.Get(k, time.Now())
	if !ok || e.Strategy != s.Strategy.Name {
		return pathmemory.Entry{}, false
	}
	return e, true
}

// record remembers the path of l, the link session s made setup after
// its punch instruction.
func (pm *pathMemory) record(s *session.Session, l *link.Link, setup time.Duration) {
	k, ok := memoryKey(s)
	if !ok {
		return
	}
	err := pm.m.Put(k, pathmemory.Entry{Path: l.Path(), Strategy: s.Strategy.Name, Setup: setup, At: time.Now()})
	if err == nil {
		return
	}
	if pm.warned.CompareAndSwap(false, true) {
		pm.log.WithError(err).Warn("path memory not saved (state_dir); it serves this run only")
	} else {
		pm.log.WithError(err).Debug("path memory not saved")
	}
}
