// Package private checks that a file holding a secret (a private key, a
// config with a join token or a SOCKS5 password) is open to its owner
// only: on Unix by its mode, as ssh does, and on Windows by its ACL, which
// may grant access to the owner, SYSTEM and Administrators and nobody
// else. The ACL decision is a pure function (Exposure) so that it is
// tested on every OS; only reading the ACL needs Windows.
package private
