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
T_DIR=${CARGO_TARGET_DIR:-$PWD/target}; RVSD=$T_DIR/release/rvsd; RVSADM=$T_DIR/release/rvsadm

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
RVSD_PID=$!
HAP_PID=$(cat "$work/haproxy.pid")
export RVS_SOCKET=$work/rvsd.sock
for i in $(seq 100); do "$RVSADM" -Ln >/dev/null 2>&1 && break; sleep 0.05; done
"$RVSADM" -A -t $VIP:80 -s rr
"$RVSADM" -a -t $VIP:80 -r 198.18.0.21:80 -m
"$RVSADM" -a -t $VIP:80 -r 198.18.0.22:80 -m
for url in http://198.18.0.21/ http://198.18.0.11/ http://$VIP/; do
  for i in $(seq 100); do ip netns exec $P-client curl -s -m 1 -o /dev/null "$url" && break; sleep 0.05; done
done

cpu_ticks() { # PID... -> user+system clock ticks of those processes
  local t=0 p
  for p in "$@"; do
    [ -n "$p" ] && [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat)))
  done
  echo $t
}

run() { # PID URL EXTRA... -> "rps p99ms cpu_us_per_request"
  local pid=$1 url=$2; shift 2
  local out c0 c1
  c0=$(cpu_ticks $pid)
  out=$(ip netns exec $P-client wrk -t"$T" -c"$C" -d"${D}s" --latency "$@" "$url" 2>&1)
  c1=$(cpu_ticks $pid)
  local rps p99 reqs
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  local cpu=0
  [ -n "$pid" ] && [ "${reqs:-0}" -gt 0 ] && cpu=$(awk -v t=$((c1 - c0)) -v r="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')
  echo "${rps:-0} ${p99:-0} $cpu"
}

declare -A R
for mode in keepalive close; do
  extra=(); [ $mode = close ] && extra=(-H "Connection: close")
  R[nginx-$mode]=$(run "" http://198.18.0.21/ "${extra[@]}")
  R[haproxy-$mode]=$(run "$HAP_PID" http://198.18.0.11/ "${extra[@]}")
  R[rvs-$mode]=$(run "$RVSD_PID" http://$VIP/ "${extra[@]}")
done

echo
echo "proxy benchmark: wrk -t$T -c$C -d${D}s, $(nproc) cores ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //'))"
echo "(cpu us/req: user+system CPU time of the proxy process per request, from /proc/PID/stat)"
printf '%-14s %14s %10s %12s %14s %10s %12s\n' "" "keep-alive r/s" "p99 ms" "cpu us/req" "close r/s" "p99 ms" "cpu us/req"
for who in nginx haproxy rvs; do
  read -r a b e <<<"${R[$who-keepalive]}"; read -r c d f <<<"${R[$who-close]}"
  printf '%-14s %14.0f %10.2f %12.2f %14.0f %10.2f %12.2f\n' "$who" "$a" "$b" "$e" "$c" "$d" "$f"
done
read -r hk hkp hku <<<"${R[haproxy-keepalive]}"; read -r hc hcp hcu <<<"${R[haproxy-close]}"
read -r rk rkp rku <<<"${R[rvs-keepalive]}"; read -r rc rcp rcu <<<"${R[rvs-close]}"
awk -v rk="$rk" -v hk="$hk" -v rc="$rc" -v hc="$hc" -v rkp="$rkp" -v hkp="$hkp" -v rcp="$rcp" -v hcp="$hcp" \
    -v rku="$rku" -v hku="$hku" -v rcu="$rcu" -v hcu="$hcu" 'BEGIN {
  printf "%-14s %14.2f %10.2f %12.2f %14.2f %10.2f %12.2f\n", "rvs/haproxy", (hk>0?rk/hk:0), (hkp>0?rkp/hkp:0), (hku>0?rku/hku:0), (hc>0?rc/hc:0), (hcp>0?rcp/hcp:0), (hcu>0?rcu/hcu:0) }'
echo
"$RVSADM" -Ln --stats
