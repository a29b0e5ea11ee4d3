// Package identity owns warren's Ed25519 keys: generating, storing and
// loading private key files, the base64url text form of public keys, and the
// TLS 1.3 configuration that makes two ends prove they hold the keys the
// other side pinned.
//
// It must not touch the network or any config format; callers decide which
// keys to pin and what to do with an authenticated connection.
package identity
