#!/usr/bin/env bash
# One benchmark run of the rvs packet engines in the netns lab (not a test).
#
#   crates/rvs-packet/scripts/bench-packet.sh [SECONDS]     (default 5 s per cell)
#
# Prints three tables:
#  * HTTP: wrk -t1 -c50 keep-alive and "Connection: close" (req/s and p99)
#    for client -> nginx direct, nftables DNAT (kernel NAT), rvs packet NAT,
#    rvs packet DR (1 and 2 RX threads) and rvs AF_XDP DR, and the client's
#    TIME_WAIT sockets after each close cell;
#  * 64-byte UDP pps: trafgen from the client (same frames for every row,
#    1024 flows to VIP:9) against the XDP-drop ceiling on the same path (an
#    XDP program dropping that UDP on the director's eth0; the ceiling is the
#    director's eth0 rx_packets rate, which counts frames XDP then drops),
#    then forwarded pps of rvs packet DR and rvs AF_XDP DR (rx_packets of
#    the real servers, which drop the UDP in nft prerouting);
#  * the ratios the issue's targets talk about, and the machine.
#
# Environment: XDP_NATIVE=1 runs rvs-xdp-lvs and rvs-xdp-drop in native
# (driver) XDP mode instead of generic; CLIENT_TW_REUSE=0 leaves the
# client's net.ipv4.tcp_tw_reuse at the kernel default (see below);
# CARGO_TARGET_DIR is honoured.
# Needs root, wrk, trafgen, nginx, nft, curl. Addresses: 198.18.0.0/15 only;
# all namespaces are rvspb<PID>-*.
set -euo pipefail
secs=${1:-5}
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: needs root" >&2; exit 1; }
for t in wrk trafgen nginx nft curl; do
  command -v $t >/dev/null || { echo "$0: $t not found" >&2; exit 1; }
done
root=$(cd "$(dirname "$0")/../../.." && pwd)
lab=$root/scripts/netns-lab
p=rvspb$$
tmp=$(mktemp -d)
engine_pid=

# Engines, rvs-xdp-drop, trafgen and nginx all run inside $p-* namespaces:
# "netns-lab down" kills every process in them, then deletes them.
cleanup() {
  if [[ -n $engine_pid ]]; then kill -TERM "$engine_pid" 2>/dev/null || true; fi
  "$lab" down $p >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
(cd "$root" && cargo build -q --release -p rvs-packet -p rvs-xdp --bins)
pkt_lvs=$target/release/rvs-packet-lvs
xdp_lvs=$target/release/rvs-xdp-lvs
xdp_drop=$target/release/rvs-xdp-drop
native=()
[[ ${XDP_NATIVE:-0} == 1 ]] && native=(--native)

load0=$(cut -d' ' -f1-3 /proc/loadavg)
VIP=198.18.0.100; RS1=198.18.0.21; RS2=198.18.0.22; LVS1=198.18.0.11; CLIENT=198.18.0.2
ns() { ip netns exec "$p-$1" "${@:2}"; }
die() { echo "$0: $*" >&2; exit 1; }

# poll CMD... every 50 ms for up to $1 seconds
poll() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.05
  done
}

"$lab" up $p
chmod 755 "$tmp"
# One client address, 28 232 ephemeral ports, and connect() takes the even
# half first: when the client closes first (wrk closes as soon as the
# response is parsed, and a real server's FIN can come some microseconds
# after the response) the connection leaves a 60 s TIME_WAIT on the client.
# Past ~14 100 of them every connect() walks the whole even half (2-3 ms of
# kernel time each), and wrk's one thread then manages ~500 connections/s
# with a p99 of ~100 ms, whatever is in the path (issue 19). Which rows
# reach that depends on the rows before (TIME_WAIT outlives a row) and on
# scheduling, so the client reuses TIME_WAIT ports after 1 s
# (tcp_tw_reuse=1), as load generators do; the TW column shows the count.
[[ ${CLIENT_TW_REUSE:-1} == 0 ]] || ns client sysctl -qw net.ipv4.tcp_tw_reuse=1
for n in rs1 rs2; do
  d=$tmp/nginx-$n; mkdir -p "$d/www"; chmod 755 "$d" "$d/www"; echo "$n" > "$d/www/index.html"
  cat > "$d/nginx.conf" <<EOF
daemon on; pid $d/nginx.pid; error_log $d/error.log; worker_processes 1;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $d/tmp;
  proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  server { listen 80 reuseport backlog=4096; root $d/www; location / { index index.html; } } }
EOF
  ns $n nginx -c "$d/nginx.conf"
  # UDP benchmark frames are counted at the real servers' eth0 and dropped
  # before the stack (no ICMP port unreachable back).
  ns $n nft -f - <<EOF
table inet rvsbench {
  chain pre { type filter hook prerouting priority -300; udp dport 9 drop; }
}
EOF
done
for ip in $RS1 $RS2; do
  poll 10 ns client curl -sf -m1 http://$ip/ || die "nginx on $ip did not start"
done
ns lvs1 ip addr add $VIP/24 dev eth0

# ---- engines ----

engine_log=
# start_engine NAME BIN PORT METHOD EXTRA...: run BIN in lvs1 and wait until
# its nft guard table covers the port.
start_engine() {
  local name=$1 bin=$2 port=$3 method=$4 proto=tcp
  shift 4
  [[ " $* " == *" --udp "* ]] && proto=udp
  engine_log=$tmp/$name.log
  ip netns exec $p-lvs1 "$bin" --interface eth0 --vip "$VIP:$port" --rs "$RS1:$port" \
    --rs "$RS2:$port" --method "$method" "$@" >"$engine_log" 2>&1 &
  engine_pid=$!
  engine_ready() {
    kill -0 "$engine_pid" && grep -q serving "$engine_log" &&
      ns lvs1 nft list table inet rvs | grep -q "$proto dport $port"
  }
  poll 10 engine_ready || die "$name did not start: $(cat "$engine_log")"
}
stop_engine() {
  [[ -n $engine_pid ]] || return 0
  kill -TERM "$engine_pid" 2>/dev/null || true
  poll 5 eval "! kill -0 $engine_pid" || kill -KILL "$engine_pid" 2>/dev/null || true
  wait "$engine_pid" 2>/dev/null || true
  engine_pid=
}
# the VIP answers HTTP through the engine
vip_ready() { poll 5 ns client curl -sf -m1 http://$VIP/ || die "no HTTP through the VIP: $(cat "${engine_log:-/dev/null}" 2>/dev/null)"; }

# ---- HTTP (wrk) ----

# wrk_cell URL [ARGS]: sets cell to "req/s p99". wrk runs in the background
# and is waited for, so a SIGINT/SIGTERM trap fires at once (a foreground
# wrk handles SIGINT itself and bash would carry on).
wrk_cell() {
  ns client wrk -t1 -c50 -d"${secs}s" --latency "$@" >"$tmp/wrk.out" 2>&1 &
  wait $! || die "wrk failed: $(cat "$tmp/wrk.out")"
  cell=$(awk '/Requests\/sec/ {r = $2} $1 == "99%" {l = $2} END {printf "%.0f %s", r, (l == "" ? "-" : l)}' "$tmp/wrk.out")
}
declare -A ka kc
http_row() {
  local key=$1 label=$2 url=$3 a b tw
  wrk_cell "$url"; a=$cell
  wrk_cell -H 'Connection: close' "$url"; b=$cell
  tw=$(ns client ss -Htan state time-wait | wc -l)
  ka[$key]=${a% *}; kc[$key]=${b% *}
  # shellcheck disable=SC2086 # "req/s p99" -> two columns
  printf "%-30s %10s %9s %10s %9s %9s\n" "$label" $a $b "$tw"
}
nat_routes() { for n in rs1 rs2; do ns $n ip route "$1" $CLIENT/32 via $LVS1 2>/dev/null || true; done; }

echo "HTTP: wrk -t1 -c50 -d${secs}s, GET / (3-byte body), nginx on rs1/rs2 (1 worker each)"
printf "%-30s %10s %9s %10s %9s %9s\n" "path" "keep-alive" "p99" "conn-close" "p99" "client"
printf "%-30s %10s %9s %10s %9s %9s\n" "" "req/s" "" "req/s" "" "TW"
http_row direct "client -> nginx direct" http://$RS1/

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
vip_ready
http_row nft "nftables DNAT (kernel NAT)" http://$VIP/
ns lvs1 nft delete table ip benchnat
ns lvs1 sysctl -qw net.ipv4.ip_forward=0

start_engine pkt-nat "$pkt_lvs" 80 nat
vip_ready
http_row nat "rvs packet NAT" http://$VIP/
stop_engine
nat_routes del

start_engine pkt-dr "$pkt_lvs" 80 dr
vip_ready
http_row dr "rvs packet DR (1 RX thread)" http://$VIP/
stop_engine

start_engine pkt-dr2 "$pkt_lvs" 80 dr --threads 2
vip_ready
http_row dr2 "rvs packet DR (2 RX threads)" http://$VIP/
stop_engine

start_engine xdp-dr "$xdp_lvs" 80 dr "${native[@]}"
vip_ready
http_row xdp "rvs AF_XDP DR" http://$VIP/
stop_engine

# ---- 64-byte UDP pps (trafgen) ----

mac=$(ns lvs1 cat /sys/class/net/eth0/address)
# 14 + 20 + 8 + 18 = 60 bytes + FCS = 64 on the wire; 1024 source ports.
cat > "$tmp/udp.cfg" <<EOF
{ eth(da=$mac, type=0x0800), ipv4(saddr=$CLIENT, daddr=$VIP, ttl=64), udp(sp=dinc(1024, 2047), dp=9), fill(0x00, 18) }
EOF
ctr() { ns "$1" cat /sys/class/net/eth0/statistics/"$2"; }
now_ns() { date +%s%N; }
# pps_cell: trafgen for secs+2 s, measure over the middle secs s; sets
# tx (client eth0 tx pps), dir (director eth0 rx pps), fwd (rs1+rs2 eth0 rx pps)
pps_cell() {
  local tg t0 t1 c0 c1 l0 l1 a0 a1 b0 b1 dt
  ip netns exec $p-client timeout -s INT $((secs + 2)) trafgen -o eth0 -i "$tmp/udp.cfg" -P1 \
    >"$tmp/trafgen.log" 2>&1 &
  tg=$!
  sleep 1
  kill -0 $tg 2>/dev/null || die "trafgen did not run: $(cat "$tmp/trafgen.log")"
  # (trafgen ignores SIGINT in the background; on a signal the trap's
  # "netns-lab down" ends it with its namespace)
  t0=$(now_ns); c0=$(ctr client tx_packets); l0=$(ctr lvs1 rx_packets); a0=$(ctr rs1 rx_packets); b0=$(ctr rs2 rx_packets)
  sleep "$secs"
  t1=$(now_ns); c1=$(ctr client tx_packets); l1=$(ctr lvs1 rx_packets); a1=$(ctr rs1 rx_packets); b1=$(ctr rs2 rx_packets)
  wait $tg || true  # trafgen ends by timeout's SIGINT
  dt=$((t1 - t0))
  tx=$(( (c1 - c0) * 1000000000 / dt ))
  dir=$(( (l1 - l0) * 1000000000 / dt ))
  fwd=$(( (a1 - a0 + b1 - b0) * 1000000000 / dt ))
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.0f%%", 100 * a / b; else print "-"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}'; }
pps_row() { printf "%-30s %12s %12s %12s %9s\n" "$@"; }

echo
mode=generic; [[ ${#native[@]} -gt 0 ]] && mode=native
echo "64-byte UDP: trafgen -P1 from the client, 1024 flows to $VIP:9, ${secs}s per row, XDP $mode mode"
pps_row "path" "offered pps" "at director" "result pps" "% ceiling"

ip netns exec $p-lvs1 "$xdp_drop" --interface eth0 --vip $VIP "${native[@]}" >"$tmp/drop.log" 2>&1 &
drop_pid=$!
poll 5 grep -q attached "$tmp/drop.log" || die "rvs-xdp-drop did not attach: $(cat "$tmp/drop.log")"
pps_cell
ceil=$dir
kill -TERM $drop_pid 2>/dev/null || true; wait $drop_pid 2>/dev/null || true
pps_row "XDP-drop ceiling (director)" "$tx" "$dir" "$ceil" "100%"

declare -A pps
pps_engine() {
  local key=$1 label=$2 bin=$3
  shift 3
  start_engine "$key-udp" "$bin" 9 dr --udp "$@"
  sleep 0.3
  pps_cell
  stop_engine
  pps[$key]=$fwd
  pps_row "$label" "$tx" "$dir" "$fwd" "$(pct "$fwd" "$ceil")"
}
pps_engine dr "rvs packet DR (1 RX thread)" "$pkt_lvs"
pps_engine dr2 "rvs packet DR (2 RX threads)" "$pkt_lvs" --threads 2
pps_engine xdp "rvs AF_XDP DR" "$xdp_lvs" "${native[@]}"

# ---- ratios ----

echo
echo "ratios (target)                        keep-alive  conn-close"
rrow() { printf "%-38s %10s %11s\n" "$1" "$(ratio "${ka[$2]}" "${ka[$3]}")" "$(ratio "${kc[$2]}" "${kc[$3]}")"; }
rrow "rvs packet DR 1T / nftables (>= 1.0x)" dr nft
rrow "rvs packet DR 2T / nftables (>= 1.0x)" dr2 nft
rrow "rvs packet NAT / nftables (>= 1.0x)" nat nft
rrow "rvs AF_XDP DR / nftables (>= 1.0x)" xdp nft
rrow "rvs AF_XDP DR / packet DR 1T" xdp dr
printf "%-38s %10s\n" "packet DR 1T pps / ceiling (>= 0.8x)" "$(ratio "${pps[dr]}" "$ceil")"
printf "%-38s %10s\n" "packet DR 2T pps / ceiling (>= 0.8x)" "$(ratio "${pps[dr2]}" "$ceil")"
printf "%-38s %10s\n" "AF_XDP DR pps / ceiling (>= 0.8x)" "$(ratio "${pps[xdp]}" "$ceil")"
printf "%-38s %10s\n" "AF_XDP / AF_PACKET 1T pps (>= 2x)" "$(ratio "${pps[xdp]}" "${pps[dr]}")"

echo
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs || true)
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
virt=$(systemd-detect-virt 2>/dev/null || true)
echo "machine: $(nproc) CPUs ($model), $mem RAM, kernel $(uname -r)${virt:+, virt: $virt}, load average $load0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; client tcp_tw_reuse=$(ns client sysctl -n net.ipv4.tcp_tw_reuse); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), trafgen $(trafgen -v 2>&1 | head -1 | cut -d' ' -f2)"
