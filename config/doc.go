// Package config reads warren's TOML configuration files: the peer daemon's
// (warren up -c FILE, see Config) and the rendezvous server's (warren
// rendezvous -c FILE, see Server).
//
// It owns everything between the bytes of a file and a ready-to-use value:
// TOML decoding, rejecting unknown keys and mistyped values, filling in
// defaults, checking every semantic rule (required keys, addresses, key
// syntax, unique names, references between sections, peer target patterns)
// and resolving key_file relative to the config file's directory. Every
// problem found is reported at once, each with file, line and key where they
// are known. Every error from Load, Parse, LoadServer and ParseServer is an
// Errors, an unreadable file included, so callers can tell a bad config
// (exit status 2) from other failures with errors.As; see Errors.
//
// It deliberately stops there: config opens no sockets, resolves no names,
// reads or creates no key files (package identity owns keys and their
// parsing), starts nothing and does not set up logging. Values such as
// LogLevel are only checked for spelling; acting on them is the caller's job.
package config
