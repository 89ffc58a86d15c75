# shellcheck shell=bash
# The anchors' lab: the same two hosts, client and group as pairbeat's lab
# (scripts/lab with LAB_DISK=loop), for the systems scripts/bench compares pairbeat
# with, each as its real daemon from Debian. Sourced by scripts/anchors/<system>,
# which defines:
#   sys_up           write the system's files on both hosts and start it on both
#   sys_start NODE   start the system on one host (after a crash)
#   sys_standby NODE move the group off NODE by the system's own planned switchover
#   sys_online NODE  let NODE run the group again
#   sys_pids NODE    the PIDs of the system's daemons on NODE (idle CPU and RSS)
#   sys_check        what the system needs, installed or not (fails with why)
# and sets SYSTEM (its name) and CODE (two letters: namespaces and interfaces).
#
# Hosts alpha and bravo and a client are network namespaces on one bridge
# (10.250.0.0/24); each host has its own mount and UTS namespace (hostname, /run),
# its own ext4 on a loop device, and nginx (tests/agents/pbtest/nginx) serving
# "Hello from HOST" on port 8080. The group, in every system: ext4 → the VIP
# 10.250.0.100/24 → nginx. Everything lives under $ANCHOR_DIR; `down` removes it,
# killing only processes inside the lab's namespaces.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NET=10.250.0
VIP=$NET.100
HOSTS="alpha bravo"
# shellcheck disable=SC2034  # for the scripts that source this one
NGINX_AGENT=$ROOT/tests/agents/pbtest/nginx
# Milliseconds in a duration written as pairbeat writes it (100ms, 2s).
to_ms() { case "$1" in *ms) echo "${1%ms}" ;; *s) echo $(( ${1%s} * 1000 )) ;; *) echo "$1" ;; esac; }
# Detection timers, as pairbeat's lab names them; each system translates them.
KEEPALIVE=${KEEPALIVE:-100ms}
DEADTIME=${DEADTIME:-500ms}
# How long a starting node waits for its peer before it runs the group alone: 3 s,
# or twice the deadtime when that is longer (pairbeat refuses less than deadtime).
INITDEAD=${INITDEAD:-$(d=$(to_ms "$DEADTIME"); [ $((2 * d)) -gt 3000 ] && echo "$((2 * d / 1000))s" || echo 3s)}

die() { echo "anchors/$SYSTEM: $*" >&2; exit 1; }
addr() { case "$1" in alpha) echo "$NET.1" ;; bravo) echo "$NET.2" ;; client) echo "$NET.10" ;; esac; }
peer_of() { [ "$1" = alpha ] && echo bravo || echo alpha; }
ns() { echo "pba$CODE-$1"; }
hdir() { echo "$ANCHOR_DIR/$1"; }
holder() { cat "$ANCHOR_DIR/$1/holder" 2>/dev/null; }
is_up() { [ -e "$ANCHOR_DIR/up" ]; }
# Runs a command inside a host: its network, mount and UTS namespaces.
in_host() { local h=$1; shift; nsenter -t "$(holder "$h")" -m -u -n -- "$@"; }

net_up() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, loop devices)"
    for cmd in ip nsenter unshare losetup mkfs.ext4 curl; do
        command -v "$cmd" >/dev/null || die "$cmd is missing: run scripts/setup --bench"
    done
    [ -x /usr/sbin/nginx ] || die "nginx is missing: run scripts/setup --bench"
    down quiet
    mkdir -p "$ANCHOR_DIR"
    ip netns add "$(ns switch)"
    ip -n "$(ns switch)" link add br0 type bridge
    ip -n "$(ns switch)" link set br0 up
    for h in $HOSTS client; do
        mkdir -p "$(hdir "$h")"
        ip netns add "$(ns "$h")"
        ip -n "$(ns "$h")" link set lo up
        ip link add "$CODE-$h" netns "$(ns switch)" type veth peer name eth0 netns "$(ns "$h")"
        ip -n "$(ns switch)" link set "$CODE-$h" master br0 up
        ip -n "$(ns "$h")" addr add "$(addr "$h")/24" brd + dev eth0
        ip -n "$(ns "$h")" link set eth0 up
        # A process that holds the host's mount and UTS namespaces, /run and hostname.
        ip netns exec "$(ns "$h")" unshare --mount --uts --propagation private \
            sh -c "hostname $h; mount -t tmpfs tmpfs /run; exec sleep infinity" </dev/null >/dev/null 2>&1 &
        echo $! > "$(hdir "$h")/holder"
    done
    sleep 0.3
    for h in $HOSTS; do
        local dir
        dir=$(hdir "$h")
        mkdir -p "$dir/mnt" "$dir/www"
        echo "Hello from $h" > "$dir/www/index.html"
        truncate -s 32M "$dir/disk.img"
        losetup --find --show "$dir/disk.img" > "$dir/loopdev"
        mkfs.ext4 -q -F "$(cat "$dir/loopdev")"
        cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx.err;
events { worker_connections 256; }
http {
    access_log off;
    server { listen 8080; root $dir/www; }
}
EOF
    done
}

down() {
    local h pid
    for h in $HOSTS client; do
        for pid in $(ip netns pids "$(ns "$h")" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
    sleep 0.2
    for h in $HOSTS client switch; do ip netns del "$(ns "$h")" 2>/dev/null; done
    for h in $HOSTS; do
        [ -r "$ANCHOR_DIR/$h/loopdev" ] && losetup -d "$(cat "$ANCHOR_DIR/$h/loopdev")" 2>/dev/null
    done
    rm -rf "$ANCHOR_DIR"
    [ "${1:-}" = quiet ] || echo "anchors/$SYSTEM: down (nothing left behind)"
}

# A power cut: the host's link goes silent first (no ICMP "port unreachable" from a
# live kernel tells the peer its daemon died: corosync's knet reacts to those at
# once), then every process of the host is gone, its VIP and mounts with them.
# `restart` brings the link back.
# Every process in network namespace $1 but $2 (the namespace's holder) frozen,
# pass after pass until a pass finds none left running (a process forked while the
# list was read, an agent's daemon going into the background, is caught by the
# next: one crash left an nginx behind that way, holding the port its successor
# needed), then all killed at once: as a power cut, none sees another die.
freeze_and_kill() {
    local ns=$1 keep=$2 pid all="" new
    while :; do
        new=""
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            [ "$pid" = "$keep" ] && continue
            case " $all " in *" $pid "*) ;; *) new="$new $pid" ;; esac
        done
        [ -z "$new" ] && break
        # shellcheck disable=SC2086  # PIDs, one word each
        kill -STOP $new 2>/dev/null
        all="$all$new"
    done
    # shellcheck disable=SC2086
    [ -z "$all" ] || kill -KILL $all 2>/dev/null
}

crash() {
    local h=$1
    ip -n "$(ns "$h")" link set eth0 down
    # All frozen first, then all killed: a process killed while another still runs
    # could warn it (keepalived's VRRP child has PR_SET_PDEATHSIG, and on its parent's
    # death would send a priority-0 advert, a graceful handover no power cut gives).
    freeze_and_kill "$(ns "$h")" "$(holder "$h")"
    in_host "$h" sh -c "ip addr del $VIP/24 dev eth0 2>/dev/null; umount -l $(hdir "$h")/mnt 2>/dev/null; rm -f $(hdir "$h")/nginx.pid"
    echo "anchors/$SYSTEM: $h crashed"
}

# Which host the client reaches through the VIP ("" when none answers within 0.5 s).
owner() { ip netns exec "$(ns client)" curl -s -m "${PROBE_TIMEOUT:-0.5}" "http://$VIP:8080/" 2>/dev/null | sed -n 's/^Hello from //p'; }

anchor_main() {
    case "${1:-}" in
        up) sys_check; net_up; sys_up; touch "$ANCHOR_DIR/up"; echo "anchors/$SYSTEM: up (VIP $VIP, http://$VIP:8080/)" ;;
        down) down ;;
        crash) [ -n "${2:-}" ] || die "crash alpha|bravo"; crash "$2" ;;
        restart) [ -n "${2:-}" ] || die "restart alpha|bravo"; ip -n "$(ns "$2")" link set eth0 up; sys_start "$2"; echo "anchors/$SYSTEM: restarted on $2" ;;
        standby) [ -n "${2:-}" ] || die "standby alpha|bravo"; sys_standby "$2" ;;
        online) [ -n "${2:-}" ] || die "online alpha|bravo"; sys_online "$2" ;;
        pids) [ -n "${2:-}" ] || die "pids alpha|bravo"; sys_pids "$2" ;;
        owner) owner ;;
        has-vip) [ -n "${2:-}" ] || die "has-vip alpha|bravo"; in_host "$2" ip -o addr show dev eth0 | grep -q " $VIP/" ;;
        ns) [ -n "${2:-}" ] || die "ns alpha|bravo|client"; ns "$2" ;;
        shell) [ -n "${2:-}" ] || die "shell alpha|bravo|client"; if [ "$2" = client ]; then ip netns exec "$(ns client)" bash; else in_host "$2" bash; fi ;;
        *) echo "usage: scripts/anchors/$SYSTEM up|down|crash NODE|restart NODE|standby NODE|online NODE|pids NODE|owner|has-vip NODE|ns NODE|shell NODE" >&2; exit 2 ;;
    esac
}
