#!/usr/bin/env bash
# Binary upgrade under load (issue 16): for each engine (proxy; packet, DR),
# wrk -c32 with keep-alive, then with "Connection: close", each run across
# UPGRADES consecutive `kill -USR2` of rvsd (one every 2 s), in the netns
# lab with nginx real servers. A probe client sends a request every 10 ms
# on one keep-alive connection; its largest gap between two answers is the
# longest stall a client saw. Prints failed requests (wrk socket errors and
# non-2xx answers, probe failures) and the longest stall per engine and mode.
# Target: 0 failed, stall < 50 ms.
# Needs root. Usage: bench/upgrade.sh [UPGRADES] [CONNECTIONS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}; C=${2:-32}; T=${3:-2}
D=$((2 * N + 3))
P=rvsupg$$
LAB=scripts/netns-lab
VIP=198.18.0.100
work=$(mktemp -d); chmod 755 "$work"
cleanup() { $LAB down $P >/dev/null 2>&1 || true; if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

cargo build --release -q --bin rvsd --bin rvsadm
T_DIR=${CARGO_TARGET_DIR:-$PWD/target}; RVSD=$T_DIR/release/rvsd; RVSADM=$T_DIR/release/rvsadm

$LAB up $P
for n in rs1 rs2; do
  mkdir -p "$work/$n/www"; chmod -R 755 "$work/$n"
  echo "$n" > "$work/$n/www/index.html"
  cat > "$work/$n/nginx.conf" <<NGX
daemon on; pid $work/$n/nginx.pid; error_log $work/$n/error.log; worker_processes 1;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $work/$n; proxy_temp_path $work/$n; fastcgi_temp_path $work/$n;
  uwsgi_temp_path $work/$n; scgi_temp_path $work/$n;
  server { listen 80 reuseport backlog=4096; root $work/$n/www; } }
NGX
  ip netns exec $P-$n nginx -c "$work/$n/nginx.conf"
done
ip -n $P-lvs1 addr add $VIP/24 dev eth0

# The probe: one keep-alive connection, a request every 10 ms for D s;
# prints "requests failed max_gap_ms".
cat > "$work/probe.py" <<'PY'
import socket, sys, time
vip, dur = sys.argv[1], float(sys.argv[2])
req = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n"
def conn():
    s = socket.create_connection((vip, 80), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s
def get(s):
    s.sendall(req)
    buf = b""
    while True:
        d = s.recv(4096)
        if not d:
            raise OSError("closed")
        buf += d
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            continue
        head = buf[:i].lower()
        n = 0
        for l in head.split(b"\r\n"):
            if l.startswith(b"content-length:"):
                n = int(l.split(b":")[1])
        if len(buf) >= i + 4 + n:
            if not head.startswith(b"http/1.1 200"):
                raise OSError(head.split(b"\r\n")[0].decode())
            return
ok = failed = 0
gap = 0.0
s = None
end = time.monotonic() + dur
last = time.monotonic()
nxt = last
while time.monotonic() < end:
    try:
        if s is None:
            s = conn()
        get(s)
        ok += 1
        now = time.monotonic()
        gap = max(gap, now - last)
        last = now
    except OSError as e:
        failed += 1
        print("probe: %s" % e, file=sys.stderr)
        s = None
    nxt += 0.01
    time.sleep(max(0.0, nxt - time.monotonic()))
print(ok, failed, "%.1f" % (gap * 1000))
PY

start_rvsd() { # ENGINE -> starts rvsd in lvs1, sets the service up
  local engine=$1 fwd args=()
  if [ "$engine" = packet ]; then args=(--engine packet --interface eth0); fwd=-g; else fwd=-m; fi
  rm -f "$work/rvsd.pid"; : >>"$work/rvsd-$engine.log"
  ip netns exec $P-lvs1 "$RVSD" "${args[@]}" --socket "$work/rvsd.sock" -p "$work/rvsd.pid" \
    >>"$work/rvsd-$engine.log" 2>&1 &
  export RVS_SOCKET=$work/rvsd.sock
  for _ in $(seq 200); do "$RVSADM" -Ln >/dev/null 2>&1 && break; sleep 0.05; done
  "$RVSADM" -A -t $VIP:80 -s rr
  "$RVSADM" -a -t $VIP:80 -r 198.18.0.21:80 $fwd
  "$RVSADM" -a -t $VIP:80 -r 198.18.0.22:80 $fwd
  for _ in $(seq 100); do ip netns exec $P-client curl -s -m 1 -o /dev/null http://$VIP/ && break; sleep 0.05; done
}

stop_rvsd() {
  local pid; pid=$(cat "$work/rvsd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do [ -n "$pid" ] && [ -d /proc/$pid ] || break; sleep 0.05; done
}

upgrade() { # -> one USR2; waits until the pidfile names a new, live pid and the old is gone
  local old new
  old=$(cat "$work/rvsd.pid")
  kill -USR2 "$old"
  for _ in $(seq 400); do
    new=$(cat "$work/rvsd.pid" 2>/dev/null || true)
    if [ -n "$new" ] && [ "$new" != "$old" ] && [ -d /proc/$new ] && [ ! -d /proc/$old ]; then
      echo ok; return
    fi
    sleep 0.025
  done
  echo "upgrade of $old did not complete" >&2; echo fail
}

run() { # ENGINE MODE UPGRADES -> "requests failed slow probe_ok probe_failed stall_ms upgrades"
  local engine=$1 mode=$2 n=$3 extra=() tag=$1-$2-$3 l0
  [ "$mode" = close ] && extra=(-H "Connection: close")
  l0=$(wc -l <"$work/rvsd-$engine.log")
  ip netns exec $P-client python3 "$work/probe.py" $VIP $D >"$work/probe-$tag.out" 2>"$work/probe-$tag.err" &
  local probe=$!
  ip netns exec $P-client wrk -t"$T" -c"$C" -d"${D}s" "${extra[@]}" http://$VIP/ >"$work/wrk-$tag.out" 2>&1 &
  local wrk=$!
  local done=0
  sleep 1
  for _ in $(seq "$n"); do
    [ "$(upgrade)" = ok ] && done=$((done + 1))
    sleep 1.5
  done
  wait $wrk || true
  wait $probe || true
  local reqs errs slow non2xx
  reqs=$(awk '/requests in/ {print $1}' "$work/wrk-$tag.out")
  # connect/read/write errors and non-2xx answers fail; wrk's "timeout"
  # counts answers slower than 2 s
  errs=$(awk '/Socket errors/ {gsub(",",""); print $4 + $6 + $8}' "$work/wrk-$tag.out")
  slow=$(awk '/Socket errors/ {gsub(",",""); print $10}' "$work/wrk-$tag.out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk-$tag.out")
  read -r pok pfail stall <"$work/probe-$tag.out" || true
  # the handover pause from rvsd's log: from the old process reading READY
  # (it stops relaying / forwarding) to the new one serving everything
  local pause
  pause=$(tail -n +$((l0 + 1)) "$work/rvsd-$engine.log" | awk '
    function secs(ts,  t, a) { split(ts, t, "T"); sub("Z", "", t[2]); split(t[2], a, ":"); return a[1]*3600 + a[2]*60 + a[3] }
    /upgrade: the new rvsd is ready/ { t0 = secs($1) }
    /upgrade: handover complete, serving/ && t0 { d = (secs($1) - t0) * 1000; if (d > m) m = d; t0 = 0 }
    END { printf "%.1f", m }')
  echo "${reqs:-0} $(( ${errs:-0} + ${non2xx:-0} )) ${slow:-0} ${pok:-0} ${pfail:-?} ${stall:-?} $done ${pause:-?}"
}

declare -A R
for engine in proxy packet; do
  start_rvsd $engine
  for mode in keepalive close; do
    # the same run without upgrades first: the stall the machine causes
    R[$engine-$mode-0]=$(run $engine $mode 0)
    R[$engine-$mode]=$(run $engine $mode "$N")
  done
  "$RVSADM" -Ln --stats >"$work/stats-$engine.txt" || true
  ones=$(pgrep -fc "$RVSD .*--socket $work/rvsd.sock" || true)
  R[$engine-procs]=$ones
  stop_rvsd
done

echo
echo "upgrade benchmark: $N upgrades per run (kill -USR2 every 2 s), wrk -t$T -c$C -d${D}s," \
  "probe: one keep-alive request every 10 ms; $(nproc) cores ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //'))"
echo "(failed: wrk connect/read/write errors and non-2xx answers, probe failures; slow: wrk answers"
echo " slower than 2 s; stall: the probe's largest gap between two answers; pause: longest handover"
echo " from rvsd's log, old process reads READY -> new one serves; baseline: same run, no upgrade)"
printf '%-7s %-9s %9s %7s %5s %10s %9s %9s | %9s %7s %5s %10s %9s\n' engine mode \
  requests failed slow probe-fail "stall ms" "pause ms" "baseline:" failed slow probe-fail "stall ms"
for engine in proxy packet; do
  for mode in keepalive close; do
    read -r reqs failed slow pok pfail stall done pause <<<"${R[$engine-$mode]}"
    read -r breqs bfailed bslow bpok bpfail bstall _ <<<"${R[$engine-$mode-0]}"
    printf '%-7s %-9s %9s %7s %5s %10s %9s %9s | %9s %7s %5s %10s %9s\n' "$engine" "$mode" \
      "$reqs" "$failed" "$slow" "$pfail" "$stall" "$pause" "$breqs" "$bfailed" "$bslow" "$bpfail" "$bstall"
    [ "$done" = "$N" ] || echo "  ($engine $mode: only $done of $N upgrades completed)"
  done
done
for engine in proxy packet; do
  echo "$engine: rvsd processes left after the runs: ${R[$engine-procs]} (expected 1)"
done
for f in "$work"/probe-*.err "$work"/wrk-*.out; do
  case $f in *.out) grep -q "Socket errors" "$f" || continue ;; esac
  [ -s "$f" ] && { echo "--- $(basename "$f")"; head -20 "$f"; }
done
true
