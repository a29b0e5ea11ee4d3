package pathmemory

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Defaults of Config.
const (
	// DefaultTTL is how long a result is trusted: networks change (a new
	// router, another ISP) more often than a week apart only for laptops,
	// which meet other networks and so other keys anyway.
	DefaultTTL = 7 * 24 * time.Hour
	// DefaultMaxEntries bounds the file: a few hundred bytes an entry.
	DefaultMaxEntries = 1024
)

// fileVersion is the format of the file; another version is discarded.
const fileVersion = 1

// Config says where the memory lives and how long it holds.
type Config struct {
	// File is the memory's file. Required.
	File string
	// TTL is how long after it was recorded an entry still counts.
	// Default: DefaultTTL.
	TTL time.Duration
	// MaxEntries bounds the entries kept; the oldest go first. Default:
	// DefaultMaxEntries.
	MaxEntries int
}

// Key is what a remembered result holds for: one peer, seen from one
// network, on its network. A network is its public address and NAT type:
// the same laptop at home and in a café gets two entries.
type Key struct {
	Peer    string `json:"peer"`     // the peer's public key
	Self    string `json:"self"`     // this end's network
	PeerNet string `json:"peer_net"` // the peer's network
}

// Entry is one remembered punch session's outcome.
type Entry struct {
	Path     string        `json:"path"`     // the winning path (session.Path* names)
	Strategy string        `json:"strategy"` // the strategy the pair's NATs chose
	Setup    time.Duration `json:"setup_ns"` // from the punch instruction to the link
	At       time.Time     `json:"at"`       // when it was recorded
}

type record struct {
	Key
	Entry
}

type fileFormat struct {
	Version int      `json:"version"`
	Entries []record `json:"entries"`
}

// Memory is the remembered outcomes, backed by Config.File. Its methods
// are safe for concurrent use.
type Memory struct {
	cfg Config

	mu      sync.Mutex // guards entries and the file
	entries map[Key]Entry
}

// New returns an empty memory for cfg; Load reads what the file holds.
func New(cfg Config) (*Memory, error) {
	if cfg.File == "" {
		return nil, errors.New("path memory: no file")
	}
	if cfg.TTL < 0 || cfg.MaxEntries < 0 {
		return nil, fmt.Errorf("path memory: negative ttl %v or max entries %d", cfg.TTL, cfg.MaxEntries)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	return &Memory{cfg: cfg, entries: make(map[Key]Entry)}, nil
}

// Load reads the file, keeping the entries that have not expired by now. A
// missing file is an empty memory; a file that cannot be read or decoded
// leaves the memory empty and is reported, so the caller can say so: the
// next Put replaces it.
func (m *Memory) Load(now time.Time) error {
	data, err := os.ReadFile(m.cfg.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("path memory: %w", err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("path memory %s: %w", m.cfg.File, err)
	}
	if f.Version != fileVersion {
		return fmt.Errorf("path memory %s: version %d, want %d", m.cfg.File, f.Version, fileVersion)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range f.Entries {
		if m.fresh(r.Entry, now) {
			m.entries[r.Key] = r.Entry
		}
	}
	m.trimLocked()
	return nil
}

// Get returns what was remembered for k, if it has not expired by now.
func (m *Memory) Get(k Key, now time.Time) (Entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[k]
	if !ok || !m.fresh(e, now) {
		return Entry{}, false
	}
	return e, true
}

// Put remembers e for k and writes the file. The memory holds e even when
// the write fails (the error says why): it still serves this run.
func (m *Memory) Put(k Key, e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[k] = e
	m.trimLocked()
	return m.saveLocked(e.At)
}

func (m *Memory) fresh(e Entry, now time.Time) bool {
	age := now.Sub(e.At)
	// An entry from the future (a clock set back) is no evidence either.
	return age >= -time.Minute && age < m.cfg.TTL
}

// trimLocked drops the oldest entries beyond MaxEntries.
func (m *Memory) trimLocked() {
	if len(m.entries) <= m.cfg.MaxEntries {
		return
	}
	recs := m.recordsLocked()
	for _, r := range recs[:len(recs)-m.cfg.MaxEntries] {
		delete(m.entries, r.Key)
	}
}

// recordsLocked is the entries, oldest first.
func (m *Memory) recordsLocked() []record {
	recs := make([]record, 0, len(m.entries))
	for k, e := range m.entries {
		recs = append(recs, record{k, e})
	}
	slices.SortFunc(recs, func(a, b record) int { return a.At.Compare(b.At) })
	return recs
}

// saveLocked writes the unexpired entries to the file, whole or not at
// all: a crash mid-write leaves the previous file.
func (m *Memory) saveLocked(now time.Time) error {
	f := fileFormat{Version: fileVersion}
	for _, r := range m.recordsLocked() {
		if m.fresh(r.Entry, now) {
			f.Entries = append(f.Entries, r)
		}
	}
	data, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return fmt.Errorf("path memory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(m.cfg.File), "."+filepath.Base(m.cfg.File)+".*")
	if err != nil {
		return fmt.Errorf("path memory: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is none
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), m.cfg.File)
	}
	if err != nil {
		return fmt.Errorf("path memory: %w", err)
	}
	return nil
}
