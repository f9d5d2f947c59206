#!/usr/bin/env bash
# One benchmark run of the rvs packet engine in the netns lab (not a test).
# Prints a table: client -> nginx direct, via nftables DNAT (kernel NAT),
# via rvs packet DR and NAT (wrk keep-alive and "Connection: close"), and
# 64-byte UDP pps with trafgen through rvs DR against the packets that reach
# the director's interface (the lab's ceiling on the same path).
#
#   crates/rvs-packet/scripts/bench-packet.sh [SECONDS]
#
# Needs root, wrk, trafgen, nginx, nft. Addresses: 198.18.0.0/15 only.
set -euo pipefail
secs=${1:-5}
root=$(cd "$(dirname "$0")/../../.." && pwd)
lab=$root/scripts/netns-lab
p=rvspkbench$$
tmp=$(mktemp -d)
trap '"$lab" down $p >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build -q --release -p rvs-packet --bins)
lvs=$target/release/rvs-packet-lvs
VIP=198.18.0.100; RS1=198.18.0.21; RS2=198.18.0.22; LVS1=198.18.0.11; CLIENT=198.18.0.2
ns() { ip netns exec "$p-$1" "${@:2}"; }

"$lab" up $p
chmod 755 "$tmp"
for n in rs1 rs2; do
  d=$tmp/nginx-$n; mkdir -p "$d/www"; chmod 755 "$d" "$d/www"; echo "$n" > "$d/www/index.html"
  cat > "$d/nginx.conf" <<EOF
daemon on; pid $d/nginx.pid; error_log $d/error.log; worker_processes 1;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $d/tmp;
  proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  server { listen 80 reuseport; root $d/www; location / { index index.html; } } }
EOF
  ns $n nginx -c "$d/nginx.conf"
done
ns lvs1 ip addr add $VIP/24 dev eth0

wrk_rps() { ns client wrk -t1 -c50 -d"${secs}s" "$@" 2>/dev/null | awk '/Requests\/sec/ {printf "%.0f", $2}'; }
row() { printf "%-28s %12s %12s\n" "$1" "$2" "$3"; }
nat_routes() { for n in rs1 rs2; do ns $n ip route "$1" $CLIENT/32 via $LVS1 2>/dev/null || true; done; }
start_lvs() {
  ns lvs1 "$lvs" --interface eth0 --vip "$VIP:$1" --rs "$RS1:$1" --rs "$RS2:$1" --method "$2" "${@:3}" \
    >"$tmp/lvs.log" 2>&1 &
  for _ in $(seq 100); do ns lvs1 nft list table inet rvs >/dev/null 2>&1 && return; sleep 0.05; done
  echo "engine did not start: $(cat "$tmp/lvs.log")" >&2; exit 1
}
stop_lvs() { for pid in $(ip netns pids $p-lvs1); do kill "$pid"; done; wait 2>/dev/null || true; }

row "path" "keep-alive" "conn-close"
row "client -> nginx direct" "$(wrk_rps http://$RS1/)" "$(wrk_rps -H 'Connection: close' http://$RS1/)"

# Kernel NAT baseline: nftables DNAT (round robin) + conntrack for replies.
nat_routes replace
ns lvs1 sysctl -qw net.ipv4.ip_forward=1
ns lvs1 nft -f - <<EOF
table ip benchnat {
  chain pre {
    type nat hook prerouting priority dstnat;
    ip daddr $VIP tcp dport 80 dnat to numgen inc mod 2 map { 0 : $RS1, 1 : $RS2 }
  }
}
EOF
row "nftables DNAT (kernel)" "$(wrk_rps http://$VIP/)" "$(wrk_rps -H 'Connection: close' http://$VIP/)"
ns lvs1 nft delete table ip benchnat
ns lvs1 sysctl -qw net.ipv4.ip_forward=0

start_lvs 80 nat
row "rvs packet NAT" "$(wrk_rps http://$VIP/)" "$(wrk_rps -H 'Connection: close' http://$VIP/)"
stop_lvs
nat_routes del

start_lvs 80 dr
row "rvs packet DR" "$(wrk_rps http://$VIP/)" "$(wrk_rps -H 'Connection: close' http://$VIP/)"
stop_lvs
row "rvs AF_XDP DR" "n/a" "n/a"

# 64-byte UDP frames (client -> VIP:9, DR to the real servers).
mac=$(ns lvs1 cat /sys/class/net/eth0/address)
cat > "$tmp/udp.cfg" <<EOF
{ eth(da=$mac, type=0x0800), ipv4(saddr=$CLIENT, daddr=$VIP, ttl=64), udp(sp=dinc(1024, 60000), dp=9), fill(0x00, 18) }
EOF
rx() { ns "$1" cat /sys/class/net/eth0/statistics/rx_packets; }
start_lvs 9 dr --udp
l0=$(rx lvs1); a0=$(rx rs1); b0=$(rx rs2)
ns client timeout "$secs" trafgen -o eth0 -i "$tmp/udp.cfg" -P1 -q >/dev/null 2>&1 || true
l1=$(rx lvs1); a1=$(rx rs1); b1=$(rx rs2)
stop_lvs
ceil=$(( (l1 - l0) / secs )); fwd=$(( (a1 - a0 + b1 - b0) / secs ))
echo
printf "%-28s %12s\n" "64-byte UDP" "pps"
printf "%-28s %12s\n" "reaching the director" "$ceil"
printf "%-28s %12s  (%s%% of the ceiling)\n" "forwarded by rvs DR" "$fwd" "$(( ceil > 0 ? fwd * 100 / ceil : 0 ))"
echo
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
