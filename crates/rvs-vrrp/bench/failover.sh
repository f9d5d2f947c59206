#!/usr/bin/env bash
# Failover benchmark (not a test): time from SIGKILL of the VRRP master to the
# VIP being configured on the backup, rvs vs keepalived 2.2.7 in the same run,
# for VRRPv2 advert_int 1 and VRRPv3 advert_int 0.1 (issue 8). Also reports
# whether the killed master still holds the VIP 5 s later (keepalived does;
# rvs lets the kernel expire it).
#
#   sudo crates/rvs-vrrp/bench/failover.sh [ROUNDS]
#
# Needs root, iproute2, /usr/sbin/keepalived and the rvs-vrrpd binary
# (`cargo build -p rvs-vrrp --examples`; set VRRPD=path if it is elsewhere).
# Uses the netns lab (198.18.0.0/15 only), prefix "rvsbench", torn down on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lab="$here/../../scripts/netns-lab"
rounds=${1:-3}
P=rvsbench
VIP=198.18.0.100
vrrpd=${VRRPD:-}
if [ -z "$vrrpd" ]; then
  for d in "${CARGO_TARGET_DIR:-}" "$here/../../target" /work/targets/vrrp; do
    [ -n "$d" ] && [ -x "$d/debug/rvs-vrrpd" ] && { vrrpd="$d/debug/rvs-vrrpd"; break; }
  done
fi
[ -x "$vrrpd" ] || { echo "rvs-vrrpd not found: cargo build -p rvs-vrrp --bin rvs-vrrpd" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
tmp=$(mktemp -d)
cleanup() { bash "$lab" down "$P" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT

has_vip() { ip -n "$P-$1" -br -4 addr show dev eth0 | grep -q " $VIP/"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

start() { # impl node prio version advert
  local impl=$1 node=$2 prio=$3 ver=$4 adv=$5
  if [ "$impl" = rvs ]; then
    ip netns exec "$P-$node" "$vrrpd" --interface eth0 --vrid 51 --priority "$prio" --version "$ver" \
      --advert-int "$adv" --auth-pass secret --vip "$VIP/24 dev eth0 label eth0:1" >"$tmp/$node.log" 2>&1 &
  else
    local auth=""
    [ "$ver" = 2 ] && auth="authentication { auth_type PASS auth_pass secret }"
    cat >"$tmp/$node.conf" <<CONF
vrrp_instance VI_1 {
  state $([ "$prio" = 100 ] && echo MASTER || echo BACKUP)
  interface eth0
  virtual_router_id 51
  priority $prio
  version $ver
  advert_int $adv
  $auth
  virtual_ipaddress {
    $VIP/24 dev eth0 label eth0:1
  }
}
CONF
    rm -f "$tmp/$node.pid" "$tmp/$node.vpid"
    ip netns exec "$P-$node" /usr/sbin/keepalived -P -n -l -f "$tmp/$node.conf" -p "$tmp/$node.pid" \
      -r "$tmp/$node.vpid" -i "$node" >"$tmp/$node.log" 2>&1 &
  fi
}

crash() { # SIGSTOP then SIGKILL everything in the namespace
  local pids; pids=$(ip netns pids "$P-$1")
  for p in $pids; do kill -STOP "$p" 2>/dev/null || true; done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
}

one() { # impl version advert -> prints "ms kept"
  local impl=$1 ver=$2 adv=$3
  bash "$lab" down "$P" >/dev/null 2>&1 || true
  bash "$lab" up "$P"
  start "$impl" lvs1 100 "$ver" "$adv"
  start "$impl" lvs2 50 "$ver" "$adv"
  local t=0
  until has_vip lvs1; do sleep 0.05; t=$((t + 1)); [ $t -gt 200 ] && { echo "timeout"; return; }; done
  sleep 2
  local t0; t0=$(now_ms)
  crash lvs1
  until has_vip lvs2; do sleep 0.005; [ $(( $(now_ms) - t0 )) -gt 10000 ] && break; done
  local ms=$(( $(now_ms) - t0 ))
  sleep 5
  local kept=no; has_vip lvs1 && kept=yes
  crash lvs2
  bash "$lab" down "$P" >/dev/null 2>&1 || true
  echo "$ms $kept"
}

printf '%-11s %-13s %-26s %s\n' impl mode "SIGKILL->backup ms (runs)" "dead master keeps VIP 5 s later"
for mode in "2 1" "3 0.1"; do
  set -- $mode
  for impl in keepalived rvs; do
    res=(); kept=()
    for _ in $(seq "$rounds"); do
      read -r ms k < <(one "$impl" "$1" "$2")
      res+=("$ms"); kept+=("$k")
    done
    med=$(printf '%s\n' "${res[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-11s v%s int %-5s median %5s (%s)   %s\n' "$impl" "$1" "$2" "$med" "${res[*]}" "${kept[*]}"
  done
done
