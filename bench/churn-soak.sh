#!/usr/bin/env bash
# Connection-churn soak of the proxy engine on loopback (issue 27): rvsd
# serves one wlc service with two nginx NAT real servers (127.0.0.2/.3),
# `--set 30 10 30`; wrk -c50 keep-alive and wrk -c20 "Connection: close"
# run together for SECS, then three 10 s bursts of close connections, each
# followed by waiting for the table to empty. Prints the connections made,
# the table entries (ActiveConn + InActConn from -Ln: a -Lnc listing of a
# big table would itself move RSS) and rvsd's RSS at each point.
# Needs nginx and wrk. Two binaries can be compared side by side on other
# ports: NP=28280 bench/churn-soak.sh ...
# Usage: bench/churn-soak.sh RVSD RVSADM [SECS]
set -euo pipefail
RVSD=$1; RVSADM=$2; D=${3:-300}
w=$(mktemp -d); chmod 755 "$w"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$w/nginx.pid" ] && kill "$(cat "$w/nginx.pid")" 2>/dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
NP=${NP:-28180}; VP=$((NP + 1))
mkdir -p "$w/www"; echo hello > "$w/www/index.html"; chmod -R 755 "$w"
cat > "$w/nginx.conf" <<NGX
daemon on; pid $w/nginx.pid; error_log $w/error.log; worker_processes 1;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $w; proxy_temp_path $w; fastcgi_temp_path $w; uwsgi_temp_path $w; scgi_temp_path $w;
  server { listen 127.0.0.2:$NP backlog=4096; listen 127.0.0.3:$NP backlog=4096; root $w/www; } }
NGX
nginx -c "$w/nginx.conf"
"$RVSD" --socket "$w/s.sock" >"$w/rvsd.log" 2>&1 & pids+=($!); P=$!
export RVS_SOCKET=$w/s.sock
for i in $(seq 100); do "$RVSADM" -Ln >/dev/null 2>&1 && break; sleep 0.05; done
"$RVSADM" --set 30 10 30
"$RVSADM" -A -t 127.0.0.1:$VP -s wlc
"$RVSADM" -a -t 127.0.0.1:$VP -r 127.0.0.2:$NP -m
"$RVSADM" -a -t 127.0.0.1:$VP -r 127.0.0.3:$NP -m
rss() { awk '/VmRSS/ {print $2}' /proc/$P/status; }
conns() { "$RVSADM" -Ln --stats --exact | awk '/^TCP/ {print $3}'; }
entries() { "$RVSADM" -Ln | awk '/^  -> [0-9]/ {s += $5 + $6} END {print s + 0}'; }
report() { printf "%-28s t=%4ss conns=%9s entries=%7s RSS=%7s kB\n" "$1" "$SECONDS" "$(conns)" "$(entries)" "$(rss)"; }
SECONDS=0
report start
wrk -t1 -c50 -d${D}s http://127.0.0.1:$VP/ >"$w/wrk-ka.log" 2>&1 &
k=$!
wrk -t1 -c20 -d${D}s -H 'Connection: close' http://127.0.0.1:$VP/ >"$w/wrk-close.log" 2>&1 &
c=$!
for i in $(seq $((D / 30))); do sleep 30; report "load"; done
wait $k $c || true
grep -h "Requests/sec" "$w/wrk-ka.log" "$w/wrk-close.log" | sed 's/^/  /'
for i in $(seq 150); do [ "$(entries)" = 0 ] && break; sleep 1; done
report "after load, table empty"
for b in 1 2 3; do
  wrk -t1 -c20 -d10s -H 'Connection: close' http://127.0.0.1:$VP/ >"$w/wrk-b.log" 2>&1
  for i in $(seq 150); do [ "$(entries)" = 0 ] && break; sleep 1; done
  report "close burst $b, table empty"
done
