#!/usr/bin/env bash
# Hosts on one machine: each Kafka broker, each opptak process and the load
# generator in its own network namespace, joined by a bridge, so that their
# traffic crosses real interfaces and can be delayed, dropped or cut between
# them (issue 20; the fault suite's network scenarios, tests/it/fault/hosts.rs).
# Root only. Addresses of the project's own test network only: net N is
# 10.77.N.0/24, the bridge opk-brN holds 10.77.N.1 in the root namespace
# (the test process, and the shared services through `forward`), and the
# hosts get 10.77.N.10, .11, ... in the order they were first named.
#
#   deploy/local/hosts.sh [--net N|auto] up [--owner PID] NAME...
#                         # the bridge, and a namespace opkN-NAME per NAME (eth0 at its
#                         # address, lo up); idempotent; prints "net N" ("auto": the first
#                         # free net, after removing the nets whose owner PID is gone)
#   deploy/local/hosts.sh [--net N] down            # everything of net N: processes left in its
#                                                   # namespaces, delay lines, forwarders, links
#   deploy/local/hosts.sh gc                        # down for every net whose owner is gone
#   deploy/local/hosts.sh [--net N] status          # hosts, addresses, links, impairments
#   deploy/local/hosts.sh [--net N] addr NAME       # NAME's address
#   deploy/local/hosts.sh [--net N] exec NAME CMD.. # CMD in NAME's namespace
#   deploy/local/hosts.sh [--net N] netem NAME delay 200ms loss 1% [to PEER,...]
#                         # every packet between NAME and its PEERs (default: everyone),
#                         # both ways, waits 200 ms and 1% are dropped (each way)
#   deploy/local/hosts.sh [--net N] netem NAME off  # ends it
#   deploy/local/hosts.sh [--net N] partition NAME  # NAME cut off from everything (its link down)
#   deploy/local/hosts.sh [--net N] heal NAME       # its link up again
#   deploy/local/hosts.sh [--net N] forward PORT... # 10.77.N.1:PORT -> 127.0.0.1:PORT, for the
#                                                   # services that listen on loopback only
#   deploy/local/hosts.sh install                   # iptables (for netem), if missing
#
# netem without sch_netem: this machine's kernel has no netem qdisc, so the
# delay and the loss are a delay line in user space (deploy/local/hosts.py
# delay) on a netfilter queue of NAME's namespace (iptables-legacy NFQUEUE
# rules on eth0; the kernel has no nft queue either). The partition is the
# link of the host side of NAME's veth set down: packets to and from NAME
# vanish without an answer, as in a network partition (no RST, no ICMP).
#
# Variables: OPPTAK_HOSTS_NET (0; --net wins), OPPTAK_HOSTS_STATE
# (/run/opptak-hosts: one directory per net), OPPTAK_PYTHON (python3).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_ROOT=${OPPTAK_HOSTS_STATE:-/run/opptak-hosts}
PYTHON=${OPPTAK_PYTHON:-python3}
NET=${OPPTAK_HOSTS_NET:-0}
# The delay line's netfilter queue inside a host's namespace (its own).
QUEUE=0

log() { printf '[hosts] %s\n' "$*" >&2; }
die() {
  printf '[hosts] ERROR: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

need_root() {
  ((EUID == 0)) || die "needs root (network namespaces, veth, bridge)"
  command -v ip >/dev/null 2>&1 || die "needs ip (Debian: iproute2)"
}

lock() {
  mkdir -p "$STATE_ROOT"
  # fd 9 holds the lock until this script exits; daemons close it (9>&-).
  exec 9>"$STATE_ROOT/.lock"
  flock -w 60 9 || die "another hosts.sh holds $STATE_ROOT/.lock"
}

net_dir() { printf '%s/%s' "$STATE_ROOT" "$NET"; }
bridge() { printf 'opk-br%s' "$NET"; }
subnet() { printf '10.77.%s' "$NET"; }
ns_of() { printf 'opk%s-%s' "$NET" "$1"; }
veth_of() { printf 'opk%s-h%s' "$NET" "$1"; } # the host (bridge) side, by index

index_of() { # NAME -> its last address byte, or nothing
  local f
  f="$(net_dir)/hosts"
  [[ -f $f ]] || return 0
  awk -v n="$1" '$1 == n { print $2 }' "$f"
}

need_index() {
  local i
  i=$(index_of "$1")
  [[ -n $i ]] || die "no host $1 in net $NET (hosts.sh --net $NET status)"
  printf '%s' "$i"
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

pid_in() { # a pid file -> its pid if that process lives
  local p
  [[ -f $1 ]] || return 1
  p=$(<"$1")
  alive "$p" && printf '%s' "$p"
}

stop_pid() { # pid: SIGTERM, up to 5 s, then SIGKILL
  local p=$1 i
  alive "$p" || return 0
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$p" || return 0
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
}

# ------------------------------------------------------------------- up ---

ensure_bridge() {
  local br
  br=$(bridge)
  if ! ip link show "$br" >/dev/null 2>&1; then
    # No STP and no forwarding delay: a port forwards the moment it is up
    # (heal is then immediate, as a cable plugged back).
    ip link add "$br" type bridge stp_state 0 forward_delay 0
  fi
  if ! ip -br addr show dev "$br" | grep -qw "$(subnet).1/24"; then
    ip addr add "$(subnet).1/24" dev "$br"
  fi
  ip link set "$br" up
  # With br_netfilter and bridge-nf-call-iptables=1 (the default once the
  # module is loaded, e.g. by Docker) bridged frames go through the root
  # namespace's iptables FORWARD chain; a DROP policy there (Docker's) would
  # cut every host off. Let this bridge's own traffic through.
  if [[ $(sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null || echo 0) == 1 ]] &&
    command -v iptables >/dev/null 2>&1 &&
    ! iptables -S FORWARD 2>/dev/null | grep -q -- "-P FORWARD ACCEPT" &&
    ! iptables -C FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null; then
    iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT
    touch "$(net_dir)/forward-rule"
  fi
}

add_host() {
  local name=$1 i ns veth peer
  [[ $name =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "host name $name: lowercase letters, digits and -"
  i=$(index_of "$name")
  if [[ -z $i ]]; then
    i=$((10 + $(wc -l <"$(net_dir)/hosts")))
    ((i <= 254)) || die "net $NET is full"
    printf '%s %s\n' "$name" "$i" >>"$(net_dir)/hosts"
  fi
  ns=$(ns_of "$name")
  veth=$(veth_of "$i")
  peer="opk${NET}-n$i"
  [[ -e /run/netns/$ns ]] || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name "$peer"
    ip link set "$peer" netns "$ns"
    ip -n "$ns" link set "$peer" name eth0
    ip -n "$ns" addr add "$(subnet).$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip link set "$veth" master "$(bridge)"
  fi
  ip -n "$ns" link set lo up
  ip link set "$veth" up
}

cmd_up() {
  local owner=""
  while (($#)); do
    case $1 in
    --owner)
      owner=${2:?--owner PID}
      shift 2
      ;;
    *) break ;;
    esac
  done
  need_root
  lock
  if [[ $NET == auto ]]; then
    gc_nets
    local n
    for ((n = 0; n <= 255; n++)); do
      # mkdir is the claim: two runs never get the same net.
      if ! ip link show "opk-br$n" >/dev/null 2>&1 && mkdir "$STATE_ROOT/$n" 2>/dev/null; then
        NET=$n
        break
      fi
    done
    [[ $NET != auto ]] || die "no free net in 10.77.0.0/16"
  fi
  [[ $NET =~ ^[0-9]+$ ]] && ((NET <= 255)) || die "net $NET: expected 0..255 or auto"
  mkdir -p "$(net_dir)"
  touch "$(net_dir)/hosts"
  [[ -z $owner ]] || printf '%s\n' "$owner" >"$(net_dir)/owner"
  ensure_bridge
  local name
  for name in "$@"; do
    add_host "$name"
  done
  echo "net $NET"
}

# ----------------------------------------------------------------- down ---

down_net() {
  local d name i ns p f
  d=$(net_dir)
  for f in "$d"/*.pid; do
    [[ -f $f ]] || continue
    p=$(pid_in "$f") && stop_pid "$p"
    rm -f "$f"
  done
  if [[ -f $d/hosts ]]; then
    while read -r name i; do
      ns=$(ns_of "$name")
      if [[ -e /run/netns/$ns ]]; then
        # What still runs in it (a test that died before its cleanup) would
        # keep the namespace, its veth and addresses alive.
        for p in $(ip netns pids "$ns" 2>/dev/null); do
          kill -KILL "$p" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
      fi
      ip link del "$(veth_of "$i")" 2>/dev/null || true
    done <"$d/hosts"
  fi
  if [[ -f $d/forward-rule ]]; then
    iptables -D FORWARD -i "$(bridge)" -o "$(bridge)" -j ACCEPT 2>/dev/null || true
  fi
  ip link del "$(bridge)" 2>/dev/null || true
  rm -rf "$d"
}

cmd_down() {
  need_root
  lock
  [[ $NET =~ ^[0-9]+$ ]] || die "down: --net N"
  down_net
  log "net $NET down"
}

gc_nets() { # with the lock held
  local d owner
  for d in "$STATE_ROOT"/*/; do
    [[ -d $d && -f $d/owner ]] || continue
    owner=$(<"$d/owner")
    if ! alive "$owner"; then
      NET=$(basename "$d") down_net_gc
    fi
  done
}

down_net_gc() {
  log "net $NET: its owner (pid $(<"$(net_dir)/owner")) is gone; taking it down"
  down_net
}

cmd_gc() {
  need_root
  lock
  gc_nets
}

# --------------------------------------------------------------- status ---

cmd_status() {
  local d name i ns state p
  d=$(net_dir)
  [[ -f $d/hosts ]] || {
    echo "net $NET: down"
    return 1
  }
  echo "net $NET: bridge $(bridge) $(subnet).1/24$( [[ -f $d/owner ]] && printf ', owner pid %s' "$(<"$d/owner")")"
  while read -r name i; do
    ns=$(ns_of "$name")
    state=$(ip -br link show "$(veth_of "$i")" 2>/dev/null | awk '{print $2}')
    case $state in
    UP | LOWERLAYERDOWN) state=connected ;;
    DOWN) state=PARTITIONED ;;
    "") state=missing ;;
    esac
    p=""
    if [[ -f $d/netem-$name ]]; then
      p=", netem $(<"$d/netem-$name")"
    fi
    printf '  %-16s %-14s %-11s %s processes%s\n' "$name" "$(subnet).$i" "$state" \
      "$(ip netns pids "$ns" 2>/dev/null | wc -l)" "$p"
  done <"$d/hosts"
  for p in "$d"/forward-*.pid; do
    [[ -f $p ]] || continue
    local port=${p##*/forward-}
    port=${port%.pid}
    if pid_in "$p" >/dev/null; then
      echo "  forward $(subnet).1:$port -> 127.0.0.1:$port"
    else
      echo "  forward $(subnet).1:$port -> 127.0.0.1:$port (NOT running)"
    fi
  done
}

# ---------------------------------------------------------------- netem ---

need_iptables() {
  command -v iptables-legacy >/dev/null 2>&1 && return 0
  need_root
  log "installing Debian package iptables (iptables-legacy, for the delay line's NFQUEUE rules)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null
  command -v iptables-legacy >/dev/null 2>&1 || die "no iptables-legacy after installing iptables"
}

# A site is a host's namespace or the root namespace ("@root"): where a
# delay line runs and its rules hold what arrives there.
in_site() { # SITE CMD...
  local site=$1
  shift
  if [[ $site == @root ]]; then
    "$@"
  else
    ip netns exec "$(ns_of "$site")" "$@"
  fi
}

site_queue() { # the site's netfilter queue: its own in a host, one per net in the root
  if [[ $1 == @root ]]; then
    printf '%s' "$((1000 + NET))"
  else
    printf '%s' "$QUEUE"
  fi
}

site_dev() { # the interface the hosts' packets arrive on at SITE
  if [[ $1 == @root ]]; then
    bridge
  else
    printf 'eth0'
  fi
}

rules_of() { # SITE TAG -> the site's INPUT rules whose tag starts with TAG, as -A lines
  in_site "$1" iptables-legacy -S INPUT 2>/dev/null | grep -F -- "--comment \"$2" || true
}

netem_off() { # NAME (lock held): its rules everywhere, then idle delay lines
  local name=$1 d site line p
  d=$(net_dir)
  command -v iptables-legacy >/dev/null 2>&1 || return 0
  for site in @root $(awk '{print $1}' "$d/hosts"); do
    while read -r line; do
      [[ -n $line ]] || continue
      # -A INPUT ... -> -D INPUT ...; eval for the quoted comment (our own text).
      eval "in_site \"\$site\" iptables-legacy -D ${line#-A }" || true
    done < <(rules_of "$site" "opk-netem:$name\"")
    if [[ -z $(rules_of "$site" "opk-netem:") ]] && p=$(pid_in "$d/delay-$site.pid"); then
      stop_pid "$p"
      rm -f "$d/delay-$site.pid" "$d/delay-$site.args"
    fi
  done
  rm -f "$d/netem-$name"
}

ensure_delay_line() { # SITE DELAY_MS LOSS_FRACTION
  local site=$1 delay=$2 frac=$3 d p i args
  d=$(net_dir)
  args="$delay $frac"
  if p=$(pid_in "$d/delay-$site.pid"); then
    [[ $(<"$d/delay-$site.args") == "$args" ]] ||
      die "$site already delays its traffic by another impairment ($(<"$d/delay-$site.args")); netem ... off first"
    return 0
  fi
  local cmd=("$PYTHON" "$HERE/hosts.py" delay --queue "$(site_queue "$site")" --delay-ms "$delay" --loss "$frac")
  [[ $site == @root ]] || cmd=(ip netns exec "$(ns_of "$site")" "${cmd[@]}")
  setsid "${cmd[@]}" </dev/null >"$d/delay-$site.log" 2>&1 9>&- &
  echo $! >"$d/delay-$site.pid"
  printf '%s\n' "$args" >"$d/delay-$site.args"
  for ((i = 0; i < 100; i++)); do
    grep -q "delay line on queue" "$d/delay-$site.log" 2>/dev/null && return 0
    alive "$(<"$d/delay-$site.pid")" || die "the delay line of $site did not start: $(tail -n 5 "$d/delay-$site.log")"
    sleep 0.1
  done
  die "the delay line of $site did not start in 10 s: $(tail -n 5 "$d/delay-$site.log")"
}

delay_rule() { # SITE FROM_ADDR TAG: what arrives at SITE from FROM_ADDR goes through its delay line
  # --queue-bypass: a packet passes untouched whenever no delay line reads.
  in_site "$1" iptables-legacy -A INPUT -i "$(site_dev "$1")" -s "$2" \
    -m comment --comment "$3" -j NFQUEUE --queue-num "$(site_queue "$1")" --queue-bypass
}

ms_of() { # 200ms | 0.2s | 200 -> milliseconds
  case $1 in
  *ms) printf '%s' "${1%ms}" ;;
  *s) awk -v s="${1%s}" 'BEGIN { printf "%g", s * 1000 }' ;;
  *) printf '%s' "$1" ;;
  esac
}

cmd_netem() {
  local name=${1:?netem NAME delay MS loss PCT [to PEER,...] | netem NAME off}
  shift
  need_root
  lock
  need_index "$name" >/dev/null
  netem_off "$name"
  [[ ${1:-} != off ]] || {
    log "netem on $name off"
    return 0
  }
  local delay=0 loss=0 peers=""
  while (($#)); do
    case $1 in
    delay)
      delay=$(ms_of "${2:?delay MS}")
      shift 2
      ;;
    loss)
      loss=${2:?loss PCT}
      loss=${loss%\%}
      shift 2
      ;;
    to)
      peers=${2:?to PEER,...}
      shift 2
      ;;
    *) die "netem: unknown argument $1 (delay MS, loss PCT, to PEER,...)" ;;
    esac
  done
  need_iptables
  local d frac peer list=() me tag="opk-netem:$name"
  d=$(net_dir)
  me="$(subnet).$(need_index "$name")"
  if [[ -n $peers ]]; then
    IFS=, read -ra list <<<"$peers"
  else
    # Everyone: the other hosts and the root namespace.
    mapfile -t list < <(awk -v n="$name" '$1 != n {print $1}' "$d/hosts")
    list+=(@root)
  fi
  frac=$(awk -v p="$loss" 'BEGIN { printf "%g", p / 100 }')
  # Each direction is delayed where it arrives: NAME's INPUT holds what its
  # peers send, each peer's INPUT what NAME sends.
  ensure_delay_line "$name" "$delay" "$frac"
  for peer in "${list[@]}"; do
    [[ $peer == @root ]] || need_index "$peer" >/dev/null
    ensure_delay_line "$peer" "$delay" "$frac"
  done
  for peer in "${list[@]}"; do
    if [[ $peer == @root ]]; then
      delay_rule "$name" "$(subnet).1" "$tag"
    else
      delay_rule "$name" "$(subnet).$(need_index "$peer")" "$tag"
    fi
    delay_rule "$peer" "$me" "$tag"
  done
  printf 'delay %sms loss %s%%%s\n' "$delay" "$loss" "${peers:+ to $peers}" >"$d/netem-$name"
  log "netem on $name: $(<"$d/netem-$name") (each way)"
}

# ------------------------------------------------------ partition, heal ---

cmd_link() { # down|up NAME
  local how=$1 name=${2:?NAME}
  need_root
  lock
  ip link set "$(veth_of "$(need_index "$name")")" "$how"
  if [[ $how == down ]]; then
    log "$name partitioned (link down)"
  else
    log "$name healed (link up)"
  fi
}

# -------------------------------------------------------------- forward ---

cmd_forward() {
  (($#)) || die "forward PORT..."
  need_root
  lock
  [[ -f $(net_dir)/hosts ]] || die "net $NET is not up"
  local port d i
  d=$(net_dir)
  for port in "$@"; do
    [[ $port =~ ^[0-9]+$ ]] || die "forward: port $port"
    pid_in "$d/forward-$port.pid" >/dev/null && continue
    setsid "$PYTHON" "$HERE/hosts.py" forward --listen "$(subnet).1:$port" --to "127.0.0.1:$port" \
      </dev/null >>"$d/forward-$port.log" 2>&1 9>&- &
    echo $! >"$d/forward-$port.pid"
    for ((i = 0; i < 100; i++)); do
      grep -q "forwarding" "$d/forward-$port.log" 2>/dev/null && break
      alive "$(<"$d/forward-$port.pid")" || die "forwarder $port did not start: $(tail -n 5 "$d/forward-$port.log")"
      sleep 0.1
    done
    log "forwarding $(subnet).1:$port to 127.0.0.1:$port"
  done
}

# ----------------------------------------------------------------- main ---

while (($#)); do
  case $1 in
  --net)
    NET=${2:?--net N|auto}
    shift 2
    ;;
  *) break ;;
  esac
done
cmd=${1:-}
(($#)) && shift
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down ;;
gc) cmd_gc ;;
status) cmd_status ;;
addr) printf '%s.%s\n' "$(subnet)" "$(need_index "${1:?addr NAME}")" ;;
exec)
  need_root
  name=${1:?exec NAME CMD...}
  shift
  need_index "$name" >/dev/null
  exec ip netns exec "$(ns_of "$name")" "$@"
  ;;
netem) cmd_netem "$@" ;;
partition) cmd_link down "$@" ;;
heal) cmd_link up "$@" ;;
forward) cmd_forward "$@" ;;
install) need_iptables ;;
*) usage ;;
esac
