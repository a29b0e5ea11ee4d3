// Command warren connects machines behind NATs directly to each other and
// carries SOCKS5 and port-forward traffic over those links.
//
// Subcommands: keygen, pubkey, rendezvous, up, status, ping, nat,
// service (Windows), demo, version.
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.
//
// It owns the command line: flags, subcommands, exit codes, log setup and
// the Windows service wrapper. It must not hold daemon logic: each
// subcommand loads config and hands over to config, daemon, rendezvous or
// demo.
package main
