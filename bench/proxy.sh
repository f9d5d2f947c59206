#!/usr/bin/env bash
# End-to-end throughput of the proxy engine against its peers, in one run,
# in the netns lab, with the same wrk settings for every column:
#   nginx direct (client -> rs1), HAProxy (mode tcp, roundrobin over rs1/rs2)
#   and rvs proxy (rr over rs1/rs2), each with keep-alive and with
#   "Connection: close". Prints a table with rvs/HAProxy ratios.
# Needs root. Usage: bench/proxy.sh [DURATION_S] [CONNECTIONS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10}; C=${2:-64}; T=${3:-2}
P=rvsbench$$
LAB=scripts/netns-lab
VIP=198.18.0.100
work=$(mktemp -d); chmod 755 "$work"
cleanup() { $LAB down $P >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q --bin rvsd --bin rvsadm
RVSD=$PWD/target/release/rvsd; RVSADM=$PWD/target/release/rvsadm

$LAB up $P
ip -n $P-lvs1 addr add $VIP/24 dev eth0
for n in rs1 rs2; do
  mkdir -p "$work/$n/www"; chmod -R 755 "$work/$n"
  echo "$n" > "$work/$n/www/index.html"
  cat > "$work/$n/nginx.conf" <<NGX
daemon on; pid $work/$n/nginx.pid; error_log $work/$n/error.log; worker_processes 1;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/$n; proxy_temp_path $work/$n; fastcgi_temp_path $work/$n;
  uwsgi_temp_path $work/$n; scgi_temp_path $work/$n;
  server { listen 80 reuseport backlog=4096; root $work/$n/www; } }
NGX
  ip netns exec $P-$n nginx -c "$work/$n/nginx.conf"
done
cat > "$work/haproxy.cfg" <<HAP
global
  maxconn 8000
  nbthread 2
defaults
  mode tcp
  timeout connect 3s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 198.18.0.11:80
  default_backend be
backend be
  balance roundrobin
  server rs1 198.18.0.21:80
  server rs2 198.18.0.22:80
HAP
ip netns exec $P-lvs1 haproxy -D -f "$work/haproxy.cfg" -p "$work/haproxy.pid"
ip netns exec $P-lvs1 "$RVSD" --socket "$work/rvsd.sock" >"$work/rvsd.log" 2>&1 &
export RVS_SOCKET=$work/rvsd.sock
for i in $(seq 100); do "$RVSADM" -Ln >/dev/null 2>&1 && break; sleep 0.05; done
"$RVSADM" -A -t $VIP:80 -s rr
"$RVSADM" -a -t $VIP:80 -r 198.18.0.21:80 -m
"$RVSADM" -a -t $VIP:80 -r 198.18.0.22:80 -m
for url in http://198.18.0.21/ http://198.18.0.11/ http://$VIP/; do
  for i in $(seq 100); do ip netns exec $P-client curl -s -m 1 -o /dev/null "$url" && break; sleep 0.05; done
done

run() { # URL EXTRA... -> "rps p99ms"
  local url=$1; shift
  local out
  out=$(ip netns exec $P-client wrk -t"$T" -c"$C" -d"${D}s" --latency "$@" "$url" 2>&1)
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  echo "${rps:-0} ${p99:-0}"
}

declare -A R
for mode in keepalive close; do
  extra=(); [ $mode = close ] && extra=(-H "Connection: close")
  R[nginx-$mode]=$(run http://198.18.0.21/ "${extra[@]}")
  R[haproxy-$mode]=$(run http://198.18.0.11/ "${extra[@]}")
  R[rvs-$mode]=$(run http://$VIP/ "${extra[@]}")
done

echo
echo "proxy benchmark: wrk -t$T -c$C -d${D}s, $(nproc) cores ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //'))"
printf '%-14s %14s %10s %14s %10s\n' "" "keep-alive r/s" "p99 ms" "close r/s" "p99 ms"
for who in nginx haproxy rvs; do
  read -r a b <<<"${R[$who-keepalive]}"; read -r c d <<<"${R[$who-close]}"
  printf '%-14s %14.0f %10.2f %14.0f %10.2f\n' "$who" "$a" "$b" "$c" "$d"
done
read -r hk hkp <<<"${R[haproxy-keepalive]}"; read -r hc hcp <<<"${R[haproxy-close]}"
read -r rk rkp <<<"${R[rvs-keepalive]}"; read -r rc rcp <<<"${R[rvs-close]}"
awk -v rk="$rk" -v hk="$hk" -v rc="$rc" -v hc="$hc" -v rkp="$rkp" -v hkp="$hkp" -v rcp="$rcp" -v hcp="$hcp" 'BEGIN {
  printf "%-14s %14.2f %10.2f %14.2f %10.2f\n", "rvs/haproxy", (hk>0?rk/hk:0), (hkp>0?rkp/hkp:0), (hc>0?rc/hc:0), (hcp>0?rcp/hcp:0) }'
echo
"$RVSADM" -Ln --stats
