package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/warren-p2p/warren/internal/private"
)

// PublicKey is an Ed25519 public key; it is a peer's identity.
type PublicKey [ed25519.PublicKeySize]byte

// String returns the key as unpadded base64url, the form used in configs.
func (k PublicKey) String() string { return base64.RawURLEncoding.EncodeToString(k[:]) }

// Short returns the first characters of String, for log lines.
func (k PublicKey) Short() string { return k.String()[:8] }

// Less orders keys; the link layer uses it to give the two ends of a
// punched connection distinct roles without another round trip.
func (k PublicKey) Less(o PublicKey) bool { return bytes.Compare(k[:], o[:]) < 0 }

// IsZero reports whether k is the zero key.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// MarshalText implements encoding.TextMarshaler.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParsePublicKey reads the base64url form written by PublicKey.String.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("not a valid Ed25519 public key (want %d base64url characters)",
			base64.RawURLEncoding.EncodedLen(len(k)))
	}
	copy(k[:], b)
	return k, nil
}

// PrivateKey is an Ed25519 private key.
type PrivateKey struct{ key ed25519.PrivateKey }

// Generate returns a new random private key.
func Generate() (PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generate key: %w", err)
	}
	return PrivateKey{key: k}, nil
}

// Public returns the key's public half.
func (k PrivateKey) Public() PublicKey {
	var p PublicKey
	copy(p[:], k.key.Public().(ed25519.PublicKey))
	return p
}

// Signer exposes the key for TLS and signing.
func (k PrivateKey) Signer() ed25519.PrivateKey { return k.key }

// ErrInsecureKeyFile is returned by Load for a key file that others can
// read: by its mode on Unix, by its ACL on Windows (see package private).
var ErrInsecureKeyFile = errors.New("private key file is readable by others")

const pemType = "PRIVATE KEY"

// Save writes k to path as PKCS#8 PEM, readable by its owner only (mode
// 0600; on Windows an ACL for the owner, SYSTEM and Administrators). It
// refuses to overwrite an existing file.
func (k PrivateKey) Save(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		return fmt.Errorf("save key %s: %w", path, err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("save key %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("save key %s: %w", path, err)
	}
	// Windows ignores the mode: the file would inherit its directory's
	// ACL, which Load then refuses. Restrict it before the key is in it.
	if err := private.Restrict(path); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("save key %s: %w", path, err)
	}
	if err := pem.Encode(f, &pem.Block{Type: pemType, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("save key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save key %s: %w", path, err)
	}
	return nil
}

// Load reads a key file written by Save. It refuses files that others may
// read, as ssh does: on Unix by the file's mode, on Windows by its ACL
// (anyone but the owner, SYSTEM and Administrators).
func Load(path string) (PrivateKey, error) {
	if err := private.Check(path); err != nil {
		if errors.Is(err, private.ErrExposed) {
			return PrivateKey{}, fmt.Errorf("load key %s: %w: %v", path, ErrInsecureKeyFile, err)
		}
		return PrivateKey{}, fmt.Errorf("load key %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("load key %s: %w", path, err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != pemType {
		return PrivateKey{}, fmt.Errorf("load key %s: no %q PEM block", path, pemType)
	}
	raw, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("load key %s: %w", path, err)
	}
	k, ok := raw.(ed25519.PrivateKey)
	if !ok {
		return PrivateKey{}, fmt.Errorf("load key %s: not an Ed25519 key (%T)", path, raw)
	}
	return PrivateKey{key: k}, nil
}

// LoadOrCreate loads path, or creates a new key there if it does not exist.
// created tells which happened.
func LoadOrCreate(path string) (k PrivateKey, created bool, err error) {
	k, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if k, err = Generate(); err != nil {
		return k, false, err
	}
	if err = k.Save(path); err != nil {
		return PrivateKey{}, false, err
	}
	return k, true, nil
}
