package identity

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "k.pem")
	k, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate new: created=%v err=%v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created || k2.Public() != k.Public() {
		t.Fatalf("reload: created=%v err=%v same=%v", created, err, k2.Public() == k.Public())
	}
	if err := k.Save(path); err == nil {
		t.Fatal("Save overwrote an existing key file")
	}
}

func TestLoadRefusesReadableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.pem")
	k, _ := Generate()
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("Load(0644) = %v, want ErrInsecureKeyFile", err)
	}
}

func TestLoadRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("Load accepted garbage")
	}
}

func TestParsePublicKey(t *testing.T) {
	k, _ := Generate()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{k.Public().String(), true},
		{"", false},
		{k.Public().String()[:42], false},
		{k.Public().String() + "A", false},
		{"!" + k.Public().String()[1:], false},
	} {
		got, err := ParsePublicKey(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != k.Public()) {
			t.Errorf("ParsePublicKey(%q) = %v, %v; ok want %v", tc.in, got, err, tc.ok)
		}
	}
}

// handshake runs a TLS handshake between a client holding ck that pins
// cwant and a server holding sk that pins swant.
func handshake(t *testing.T, ck, sk PrivateKey, cwant, swant PublicKey) (cerr, serr error) {
	t.Helper()
	ccert, _ := Certificate(ck)
	scert, _ := Certificate(sk)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(b, TLSConfig(scert, Pinned(swant)))
		err := s.Handshake()
		b.Close()
		done <- err
	}()
	c := tls.Client(a, TLSConfig(ccert, Pinned(cwant)))
	cerr = c.Handshake()
	if cerr == nil {
		if got, err := PeerKey(c.ConnectionState()); err != nil || got != cwant {
			t.Errorf("PeerKey = %v, %v; want %v", got, err, cwant)
		}
	}
	a.Close()
	return cerr, <-done
}

func TestTLSPinning(t *testing.T) {
	alice, _ := Generate()
	bob, _ := Generate()
	mallory, _ := Generate()
	if cerr, serr := handshake(t, alice, bob, bob.Public(), alice.Public()); cerr != nil || serr != nil {
		t.Fatalf("matching keys: client %v, server %v", cerr, serr)
	}
	// The server is an impostor: the client must refuse it.
	if cerr, _ := handshake(t, alice, mallory, bob.Public(), alice.Public()); cerr == nil {
		t.Fatal("client accepted a server with the wrong key")
	}
	// The client is an impostor: the server must refuse it.
	if _, serr := handshake(t, mallory, bob, bob.Public(), alice.Public()); serr == nil {
		t.Fatal("server accepted a client with the wrong key")
	}
}
