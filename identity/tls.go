package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ErrKeyMismatch is returned when the other end of a TLS handshake holds a
// key other than the one pinned for it.
var ErrKeyMismatch = errors.New("peer key does not match the pinned key")

// Certificate returns a self-signed certificate for k. Only the key inside it
// matters: peers pin keys, not names or CAs.
func Certificate(k PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.key.Public(), k.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k.key}, nil
}

// TLSConfig returns a TLS 1.3-only configuration that presents cert and
// requires the other end to present a certificate whose Ed25519 key accept
// approves. The same configuration serves both tls.Client and tls.Server,
// since either end of a punched connection may take either role.
//
// accept sees the peer's key after the peer proved possession of it; it
// returns nil to accept. The key is not trusted for anything before that.
func TLSConfig(cert tls.Certificate, accept func(PublicKey) error) *tls.Config {
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		k, err := keyOf(raw)
		if err != nil {
			return err
		}
		return accept(k)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// Chain and name checks are replaced by key pinning in
		// VerifyPeerCertificate, which runs on both client and server.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verify,
		ServerName:            "warren",
	}
}

// Pinned returns an accept function for TLSConfig that admits only want.
func Pinned(want PublicKey) func(PublicKey) error {
	return func(got PublicKey) error {
		if got != want {
			return fmt.Errorf("%w: got %s, want %s", ErrKeyMismatch, got.Short(), want.Short())
		}
		return nil
	}
}

// PeerKey returns the verified key of the other end of a completed handshake.
func PeerKey(cs tls.ConnectionState) (PublicKey, error) {
	raw := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		raw[i] = c.Raw
	}
	return keyOf(raw)
}

func keyOf(raw [][]byte) (PublicKey, error) {
	if len(raw) != 1 {
		return PublicKey{}, fmt.Errorf("want exactly one peer certificate, got %d", len(raw))
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return PublicKey{}, fmt.Errorf("peer certificate: %w", err)
	}
	pk, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("peer certificate key is %T, want Ed25519", cert.PublicKey)
	}
	// The self-signature proves nothing TLS has not: the handshake's
	// CertificateVerify already proved possession of this key.
	var k PublicKey
	copy(k[:], pk)
	return k, nil
}
