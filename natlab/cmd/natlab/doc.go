// Command natlab builds, lists and removes natlab labs by hand: real Linux
// NATs in network namespaces, to run warren binaries in.
//
//	natlab up [-prefix P] [-profile NAME] [-loss PCT] [-udp-timeout DUR] [-q] SITE...
//	natlab down [PREFIX]
//	natlab list
//	natlab kinds
//	natlab profiles
//
// up builds a lab with the server and one site per SITE argument, named a,
// b, c, ..., prints how to reach each host and exits, leaving the lab
// standing. A SITE is a NAT kind, or OUTER/INNER for a double NAT (carrier
// NAT in front of a home NAT), optionally followed by :N for N hosts
// behind the NAT (a, a2, a3, ...), and @PROFILE to give that site's
// uplink a profile other than -profile's (default lan: no emulator); for
// example `natlab up -profile mobile cone symseq` puts two sites on LTE-like
// uplinks, and `natlab up cone@bad-wifi open` one. profiles lists the
// profiles (package natlab documents them). If up fails or is interrupted it removes
// what it made. down removes one lab, or without PREFIX every lab (any
// namespace starting with "wl", the default prefix, and every lab found by
// its PREFIX-inet namespace), including those of tests running now. Usage
// errors exit 2, failures 1.
//
// To try warren by hand on a bad path: `natlab up -profile mobile cone
// symseq`, then run `warren rendezvous` in the server's namespace and
// `warren up` in a's and b's (`ip netns exec NAME ...`, as up prints);
// every packet between a and b crosses two LTE-like uplinks.
//
// It owns the command line only; every lab operation is natlab's.
package main
