package punch

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// SessionID names one punch attempt between two peers. The rendezvous
// server issues it to both.
type SessionID [16]byte

// NewSessionID returns a random session ID.
func NewSessionID() SessionID {
	var s SessionID
	rand.Read(s[:])
	return s
}

func (s SessionID) String() string { return hex.EncodeToString(s[:]) }

// ParseSessionID reads the hex form written by String.
func ParseSessionID(str string) (SessionID, error) {
	var s SessionID
	b, err := hex.DecodeString(str)
	if err != nil || len(b) != len(s) {
		return s, fmt.Errorf("bad punch session id %q", str)
	}
	copy(s[:], b)
	return s, nil
}

// helloMagic opens every punched connection; the version is in its last byte.
const helloMagic = "WRN\x01"

const helloLen = len(helloMagic) + len(SessionID{})

// ErrBadHello is returned for a connection that did not start with a hello.
var ErrBadHello = errors.New("not a warren punch hello")

func writeHello(w io.Writer, s SessionID) error {
	var b [helloLen]byte
	copy(b[:], helloMagic)
	copy(b[len(helloMagic):], s[:])
	_, err := w.Write(b[:])
	return err
}

func readHello(r io.Reader) (SessionID, error) {
	var b [helloLen]byte
	var s SessionID
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return s, err
	}
	if string(b[:len(helloMagic)]) != helloMagic {
		return s, ErrBadHello
	}
	copy(s[:], b[len(helloMagic):])
	return s, nil
}
