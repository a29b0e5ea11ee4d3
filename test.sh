#!/usr/bin/env bash
# Runs every warren test: unit tests, end-to-end tests with the real binary
# and real clients, and the NAT lab (real kernel NATs in network
# namespaces). The lab needs root, iproute2, nftables, conntrack, curl,
# iperf3, ethtool (its uplink emulator), ping, miniupnpd-nftables
# (routers that grant port mappings) and tinyproxy (the proxy of
# proxy-only sites), and the tests with real clients
# chromium, openssh-server, openssh-client, dnsmasq and bind9-dnsutils;
# as root this script installs what is missing. Without root the lab tests
# skip with a loud line (with CI=true they fail instead).
set -euo pipefail
cd "$(dirname "$0")"

# nft, conntrack, sshd, dnsmasq and miniupnpd live in /usr/sbin, which a
# user's PATH may lack; the check below and the tests look there too.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for pair in nft:nftables conntrack:conntrack curl:curl ip:iproute2 iperf3:iperf3 ethtool:ethtool ping:iputils-ping \
	chromium:chromium sshd:openssh-server ssh:openssh-client scp:openssh-client \
	dnsmasq:dnsmasq dig:bind9-dnsutils systemd-analyze:systemd miniupnpd:miniupnpd-nftables tinyproxy:tinyproxy; do
	pkg="${pair#*:}"
	command -v "${pair%%:*}" >/dev/null 2>&1 || [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "test.sh: installing ${missing[*]}"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	else
		echo "!!! test.sh: missing ${missing[*]} and not root: NAT lab tests will be skipped"
	fi
fi

go vet ./...
go test -count=1 -timeout 30m "$@" ./...
