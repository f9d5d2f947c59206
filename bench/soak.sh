#!/usr/bin/env bash
# Reliability soak of one rvsd engine in the netns lab (issue 17; RSS
# acceptance of issue 27). A benchmark, not a test.
#
#   bench/soak.sh ENGINE [SECS]     ENGINE: proxy or packet; SECS default 1800
#
# rvsd runs in lvs1 with -f and a small keepalived.conf: one virtual_server
# VIP:80, wlc, delay_loop 2, two real servers (rs1, rs2: nginx, 1 worker)
# with TCP_CHECK (connect_timeout 1, retry 0). The packet engine forwards in
# DR (real servers hold the VIP on lo), the proxy engine relays (lb_kind
# NAT; the proxy is the client of the real servers). Timeouts: --set 30 10 30.
# For SECS seconds:
#   * wrk -t1 -c10 keep-alive and wrk -t1 -c10 "Connection: close" from the
#     client namespace, restarted every 10 s so that errors can be placed in
#     time (client: net.ipv4.tcp_tw_reuse=1; with the proxy engine lvs1 too,
#     since it is the client of the real servers);
#   * nginx on rs1 stopped and started every 30 s (down 30 s, up 30 s);
#   * `rvsadm -e` on rs2's weight every 5 s;
#   * SIGHUP to rvsd every 60 s;
#   * every 60 s a sample: VmRSS, open fds, table entries (ActiveConn +
#     InActConn from -Ln), ERROR/panic lines in rvsd's log.
# Then it waits (up to 300 s) for the table to return to its baseline (0),
# and prints the samples and a verdict: rvsd alive, no ERROR/panic in its
# log, table back to baseline, RSS and fds within +-5 % between minute 5
# and the last sample, no wrk error outside the windows where rs1 was
# stopped but still in the table (a 10 s wrk slice that starts less than
# WINDOW=8 s after a stop, or overlaps a stop: detection takes at most
# delay_loop 2 + connect_timeout 1 + the driver's tick).
#
# Two runs (proxy and packet) can run at once: namespaces are rvsk<PID>-*.
# Environment: RVSD, RVSADM (default target/release/{rvsd,rvsadm}, built
# beforehand: cargo build --release --bin rvsd --bin rvsadm), KEEP=DIR keeps
# the logs in DIR. Needs root, wrk, nginx. Addresses: 198.18.0.0/15 only.
set -euo pipefail
engine=${1:-}; secs=${2:-1800}
[[ $engine == proxy || $engine == packet ]] || { echo "usage: $0 proxy|packet [SECS]" >&2; exit 2; }
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 proxy|packet [SECS]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: needs root" >&2; exit 1; }
for t in wrk nginx; do command -v $t >/dev/null || { echo "$0: $t not found" >&2; exit 1; }; done
root=$(cd "$(dirname "$0")/.." && pwd)
lab=$root/scripts/netns-lab
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
RVSD=${RVSD:-$target/release/rvsd}; RVSADM=${RVSADM:-$target/release/rvsadm}
[[ -x $RVSD && -x $RVSADM ]] || { echo "$0: build first: cargo build --release --bin rvsd --bin rvsadm" >&2; exit 1; }
p=rvsk$$
w=${KEEP:-$(mktemp -d)}; mkdir -p "$w"; chmod 755 "$w"
rvsd_pid=; bg=()
cleanup() {
  for b in "${bg[@]}"; do kill "$b" 2>/dev/null || true; done
  [[ -n $rvsd_pid ]] && kill -TERM "$rvsd_pid" 2>/dev/null || true
  "$lab" down $p >/dev/null 2>&1 || true
  [[ -n ${KEEP:-} ]] || rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

VIP=198.18.0.100; RS1=198.18.0.21; RS2=198.18.0.22
ns() { ip netns exec "$p-$1" "${@:2}"; }
die() { echo "$0: $*" >&2; exit 1; }
poll() { local end=$((SECONDS + $1)); shift; until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 0.1; done; }

"$lab" up $p
ns client sysctl -qw net.ipv4.tcp_tw_reuse=1
for n in rs1 rs2; do
  d=$w/nginx-$n; mkdir -p "$d/www"; chmod 755 "$d" "$d/www"; echo "$n" > "$d/www/index.html"
  cat > "$d/nginx.conf" <<EOF
daemon on; pid $d/nginx.pid; error_log $d/error.log; worker_processes 1;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $d/tmp;
  proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  server { listen 80 backlog=4096; root $d/www; location / { index index.html; } } }
EOF
  ns $n nginx -c "$d/nginx.conf"
done
poll 10 ns client curl -sf -m1 http://$RS1/ || die "nginx on rs1 did not start"
poll 10 ns client curl -sf -m1 http://$RS2/ || die "nginx on rs2 did not start"
ns lvs1 ip addr add $VIP/24 dev eth0

if [[ $engine == packet ]]; then kind=DR; mflag=-g; eargs=(--engine packet --interface eth0)
else kind=NAT; mflag=-m; eargs=(--engine proxy); ns lvs1 sysctl -qw net.ipv4.tcp_tw_reuse=1; fi
cat > "$w/keepalived.conf" <<EOF
virtual_server $VIP 80 {
    delay_loop 2
    lb_algo wlc
    lb_kind $kind
    protocol TCP
    real_server $RS1 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server $RS2 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
EOF
export RVS_SOCKET=$w/rvsd.sock
ip netns exec $p-lvs1 "$RVSD" -f "$w/keepalived.conf" --socket "$RVS_SOCKET" "${eargs[@]}" >"$w/rvsd.log" 2>&1 &
rvsd_pid=$!
table_full() { [[ $("$RVSADM" -Ln | grep -c '^  -> [0-9]') == 2 ]]; }
poll 20 table_full || die "rvsd did not load both real servers: $(tail -5 "$w/rvsd.log")"
"$RVSADM" --set 30 10 30
base=$("$RVSADM" -Ln | awk '/^  -> [0-9]/ {s += $5 + $6} END {print s + 0}')
poll 10 ns client curl -sf -m1 http://$VIP/ || die "no HTTP through the VIP: $(tail -5 "$w/rvsd.log")"

rss() { awk '/VmRSS/ {print $2}' /proc/$rvsd_pid/status 2>/dev/null || echo -; }
fds() { ls /proc/$rvsd_pid/fd 2>/dev/null | wc -l; }
entries() { "$RVSADM" -Ln 2>/dev/null | awk '/^  -> [0-9]/ {s += $5 + $6} END {print s + 0}'; }
rsin() { "$RVSADM" -Ln 2>/dev/null | grep -c "$RS1:80" || true; }
logerr() { grep -cE 'ERROR|panic' "$w/rvsd.log" || true; }

# wrk in 10 s slices; wrk.tsv: start, end, kind, requests, errors
wrk_loop() {
  local kind=$1 t0 t1 out=$w/wrk-$1.out r e
  shift
  while ((SECONDS < secs)); do
    t0=$(date +%s)
    ns client wrk -t1 -c10 -d10s "$@" http://$VIP/ >"$out" 2>&1 || true
    t1=$(date +%s)
    r=$(awk '/requests in/ {print $1}' "$out")
    e=$(awk '/Socket errors/ {gsub(",", ""); s = $4 + $6 + $8 + $10} /Non-2xx/ {s += $5} END {print s + 0}' "$out")
    echo "$t0 $t1 $kind ${r:-0} $e" >>"$w/wrk.tsv"
  done
}
: >"$w/wrk.tsv"; : >"$w/stops"
SECONDS=0
wrk_loop ka & bg+=($!)
wrk_loop close -H 'Connection: close' & bg+=($!)

printf "%-6s %9s %5s %8s %6s %6s\n" min "RSS kB" fds entries rs1in errlog | tee "$w/samples"
sample() { printf "%-6s %9s %5s %8s %6s %6s\n" "$1" "$(rss)" "$(fds)" "$(entries)" "$(rsin)" "$(logerr)" | tee -a "$w/samples"; }
sample 0
tick=0; down=0; weight=1; hups=0; edits=0; stops=0
while ((SECONDS < secs)); do
  sleep $(( (tick + 1) * 5 - SECONDS > 0 ? (tick + 1) * 5 - SECONDS : 0 ))
  tick=$((tick + 1))
  kill -0 $rvsd_pid 2>/dev/null || break
  weight=$((weight % 3 + 1))
  "$RVSADM" -e -t $VIP:80 -r $RS2:80 $mflag -w $weight >>"$w/rvsadm.log" 2>&1 && edits=$((edits + 1))
  if ((tick % 6 == 0)); then
    if ((down)); then ns rs1 nginx -c "$w/nginx-rs1/nginx.conf" || true; down=0
    else ns rs1 nginx -c "$w/nginx-rs1/nginx.conf" -s stop || true; date +%s >>"$w/stops"; down=1; stops=$((stops + 1)); fi
  fi
  if ((tick % 12 == 0)); then
    kill -HUP $rvsd_pid && hups=$((hups + 1))
    sample $((tick / 12))
  fi
done
for b in "${bg[@]}"; do wait "$b" 2>/dev/null || true; done; bg=()
((down)) && { ns rs1 nginx -c "$w/nginx-rs1/nginx.conf" || true; }
alive=yes; kill -0 $rvsd_pid 2>/dev/null || alive=no
t_end=$SECONDS
back=no
for i in $(seq 300); do [[ $(entries) == "$base" ]] && { back=yes; break; }; sleep 1; done
drain=$((SECONDS - t_end))
sample end
echo "timeouts: $("$RVSADM" -L --timeout 2>&1)"

# wrk slices: errors inside a stop window are expected
WINDOW=${WINDOW:-8}
read -r req err exp <<<"$(awk -v W="$WINDOW" 'NR == FNR {s[n++] = $1; next}
  { ok = 0; for (i = 0; i < n; i++) if ($1 < s[i] + W && $2 > s[i]) ok = 1
    req += $4; err += $5; if (ok) inw += $5 }
  END {print req + 0, err + 0, inw + 0}' "$w/stops" "$w/wrk.tsv")"
unexp=$((err - exp))

pct() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%+.1f", 100 * (a - b) / b; else print "nan"}'; }
flat() { awk -v a="$1" -v b="$2" 'BEGIN {d = (a - b) / b; exit !(b > 0 && d <= 0.05 && d >= -0.05)}'; }
row5=$(awk '$1 == "5"' "$w/samples"); rowN=$(awk '$1 ~ /^[0-9]+$/' "$w/samples" | tail -1)
r5=$(echo "$row5" | awk '{print $2}'); rN=$(echo "$rowN" | awk '{print $2}')
f5=$(echo "$row5" | awk '{print $3}'); fN=$(echo "$rowN" | awk '{print $3}')
nerr=$(logerr)
echo
echo "engine $engine: ${secs}s, $stops rs1 stops, $edits weight edits, $hups SIGHUPs"
echo "wrk: $req requests, $err errors ($exp in stop windows, $unexp outside)"
echo "RSS minute 5 -> $(echo "$rowN" | awk '{print $1}'): $r5 -> $rN kB ($(pct "$rN" "$r5") %); fds $f5 -> $fN ($(pct "$fN" "$f5") %)"
echo "fds idle (before the load -> after the drain): $(awk '$1 == "0" {print $3}' "$w/samples") -> $(awk '$1 == "end" {print $3}' "$w/samples") (under load the proxy holds 2 per relayed connection)"
echo "table: baseline $base, back to it ${back} (${drain}s after the load)"
v=PASS; why=()
[[ $alive == yes ]] || { v=FAIL; why+=("rvsd died"); }
[[ $nerr == 0 ]] || { v=FAIL; why+=("$nerr ERROR/panic lines in the log"); }
[[ $back == yes ]] || { v=FAIL; why+=("table not back to baseline"); }
[[ -n $r5 ]] && flat "$rN" "$r5" || { v=FAIL; why+=("RSS not flat"); }
[[ -n $f5 ]] && flat "$fN" "$f5" || { v=FAIL; why+=("fds not flat"); }
((unexp == 0)) || { v=FAIL; why+=("$unexp wrk errors outside stop windows"); }
echo "verdict ($engine): $v${why:+: ${why[*]}}"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
grep -E 'ERROR|panic' "$w/rvsd.log" | head -5 || true
