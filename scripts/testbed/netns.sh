#!/usr/bin/env bash
# A testbed of real network stacks: N hosts, each in its own Linux network
# namespace, on one or more sites (a site is a bridge in its own router
# namespace), the sites joined through a WAN namespace. Every host's upload
# and download and every site's WAN link are shaped with `tc tbf`; real
# `waveguard agent` / `waveguard seed` processes run inside the hosts.
#
# `tc netem` is not assumed (it is missing on the machines this was written
# on), so there is no added latency or loss: links are as fast as the kernel
# within their tbf rate.
#
# Usage (as root):
#   netns.sh up NAME [--sites 1,3,3] [--up RATE] [--down RATE]
#                    [--host I:UP:DOWN]... [--wan-rate RATE] [--site-rate S:RATE]...
#       Builds namespaces wg-NAME-0 .. wg-NAME-(N-1) (the hosts, numbered across
#       the sites in order), wg-NAME-site0 .. (each site's router and bridge)
#       and wg-NAME-wan. Host k of site s is 10.77.(s+1).(10+k); its default
#       route is its site router 10.77.(s+1).1. RATE is tc's syntax (100mbit,
#       1gbit, 800kbit); 0 leaves a link unshaped. --up/--down apply to every
#       host (its veth's egress shapes its upload; the bridge port's egress, its
#       download), --host overrides them for host I; --wan-rate shapes every
#       site's link to the WAN in both directions, --site-rate overrides it for
#       site S. Fails half-way only after tearing down what it built.
#   netns.sh run NAME --bin WAVEGUARD --work DIR --root ROOT_JSON
#                    [--seeder I --repo DIR] [--agents LIST] [--wan-fetchers N]
#                    [--config-extra FILE] [--only seeder|agents] [--wait SECS]
#                    [--throttle UP:DOWN]
#       Starts `waveguard seed DIR` on host I (if --seeder) and `waveguard
#       agent` on every host in LIST (default: every host but the seeder;
#       LIST is e.g. "1-3,5"), each with a generated config in DIR/hostI/
#       (agent.toml, data/, log). Agents bootstrap from the seeder and find
#       their site's LAN by mDNS; they listen on TCP 4610, their API is
#       127.0.0.1:7070 inside their namespace, and their own throttles are off
#       (the kernel's tbf does the limiting). A node key already in
#       DIR/hostI/data/node.key is kept (to place a host in a chosen wave).
#       --config-extra appends a TOML fragment (starting with a [table]
#       header) to every agent's config, with @DIR@ replaced by DIR/hostI.
#       --only starts just the seeder or just the agents (both still need
#       --seeder, for the bootstrap address), so a seeder can be ready first.
#       --wait waits until every started process answers `waveguard status`.
#       --throttle sets every started process's own upload and download
#       limits in bytes per second (0 = off, the default), for runs where the
#       agents should know their rates as well as the kernel enforcing them.
#   netns.sh stop NAME
#       Kills every process in NAME's namespaces; the namespaces stay.
#   netns.sh down NAME
#       Kills every process in NAME's namespaces and deletes them. Idempotent.
#   netns.sh hosts NAME          one line per host: index, site, namespace, address
#   netns.sh exec NAME I CMD...  runs CMD inside host I's namespace
#
# Environment defaults for `up`: WG_SITES, WG_UP, WG_DOWN, WG_WAN_RATE.
# State (the host table) is kept in ${WG_TESTBED_STATE:-/run/waveguard-testbed}/NAME.
# Wrappers should `trap 'netns.sh down NAME' EXIT INT TERM` right after `up`.
set -euo pipefail

STATE_ROOT=${WG_TESTBED_STATE:-/run/waveguard-testbed}
NET=10.77
PORT=4610

die() {
    echo "netns.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

need_root() {
    [[ $EUID -eq 0 ]] || die "must run as root: network namespaces, veth and tc need CAP_NET_ADMIN and CAP_SYS_ADMIN"
    command -v ip >/dev/null || die "the 'ip' command (iproute2) is missing"
    command -v tc >/dev/null || die "the 'tc' command (iproute2) is missing"
}

check_name() {
    [[ $1 =~ ^[a-z0-9]{1,24}$ ]] || die "NAME must be 1 to 24 lowercase letters or digits, not '$1'"
}

# Runs a command in namespace $1.
nsx() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# Shapes the egress of device $2 in namespace $1 to rate $3 (0: leave it alone).
shape() {
    local ns=$1 dev=$2 rate=$3
    [[ $rate == 0 ]] && return 0
    local bits
    bits=$(rate_bits "$rate") || die "cannot read the rate '$rate' (write e.g. 100mbit, 1gbit, 800kbit)"
    # Burst: 10 ms at the rate (the token bucket must refill faster than the
    # timer ticks), at least a few full-size frames; queue: 100 ms at the rate.
    local burst=$((bits / 8 / 100))
    ((burst < 16384)) && burst=16384
    nsx "$ns" tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 100ms
}

# A tc rate as bits per second.
rate_bits() {
    local r=${1,,} n unit
    [[ $r =~ ^([0-9]+)([kmg]?)(bit|bps)?$ ]] || return 1
    n=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[2]}
    case $unit in
        k) n=$((n * 1000)) ;;
        m) n=$((n * 1000 * 1000)) ;;
        g) n=$((n * 1000 * 1000 * 1000)) ;;
    esac
    [[ ${BASH_REMATCH[3]} == bps ]] && n=$((n * 8))
    echo "$n"
}

# Creates namespace $1 with loopback up; the clear error if namespaces cannot be made.
add_ns() {
    local err
    if ! err=$(ip netns add "$1" 2>&1); then
        die "cannot create network namespace $1: $err"
    fi
    echo "$1" >>"$STATE/namespaces"
    nsx "$1" ip link set lo up
}

cmd_up() {
    local name=$1
    shift
    check_name "$name"
    need_root
    local sites=${WG_SITES:-3} up=${WG_UP:-0} down=${WG_DOWN:-0} wan=${WG_WAN_RATE:-0}
    local -A host_up=() host_down=() site_rate=()
    while (($#)); do
        (($# >= 2)) || die "up: option '$1' needs a value"
        case $1 in
            --sites) sites=$2 ;;
            --up) up=$2 ;;
            --down) down=$2 ;;
            --wan-rate) wan=$2 ;;
            --host)
                [[ $2 =~ ^([0-9]+):([^:]+):([^:]+)$ ]] || die "--host takes I:UP:DOWN, not '$2'"
                host_up[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
                host_down[${BASH_REMATCH[1]}]=${BASH_REMATCH[3]}
                ;;
            --site-rate)
                [[ $2 =~ ^([0-9]+):([^:]+)$ ]] || die "--site-rate takes S:RATE, not '$2'"
                site_rate[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
                ;;
            *) die "up: unknown option '$1' (see the top of $0)" ;;
        esac
        shift 2
    done
    [[ $sites =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--sites takes host counts per site, e.g. 1,3,3, not '$sites'"
    local -a counts
    IFS=, read -ra counts <<<"$sites"
    ((${#counts[@]} <= 99)) || die "at most 99 sites"
    for c in "${counts[@]}"; do
        ((c >= 1 && c <= 200)) || die "a site has 1 to 200 hosts, not $c"
    done

    STATE=$STATE_ROOT/$name
    if [[ -e $STATE ]] || ip netns list | grep -q "^wg-$name-"; then
        die "testbed '$name' exists already; run '$0 down $name' first"
    fi
    mkdir -p "$STATE"
    : >"$STATE/namespaces"
    : >"$STATE/hosts"
    # Whatever fails or interrupts from here on, leave nothing behind.
    trap 'echo "netns.sh: up failed; tearing down $name" >&2; cmd_down "$name" >/dev/null 2>&1 || true' EXIT
    trap 'exit 130' INT TERM

    local wan_ns=wg-$name-wan
    add_ns "$wan_ns"
    nsx "$wan_ns" sysctl -qw net.ipv4.ip_forward=1
    local index=0 s k
    for s in "${!counts[@]}"; do
        local router=wg-$name-site$s
        add_ns "$router"
        nsx "$router" sysctl -qw net.ipv4.ip_forward=1
        # The site's WAN link: router "wan0" <-> WAN "s<s>", shaped both ways.
        ip link add wan0 netns "$router" type veth peer name "s$s" netns "$wan_ns"
        nsx "$wan_ns" ip addr add "$NET.$((200 + s)).1/24" dev "s$s"
        nsx "$wan_ns" ip link set "s$s" up
        nsx "$wan_ns" ip route add "$NET.$((s + 1)).0/24" via "$NET.$((200 + s)).2"
        nsx "$router" ip addr add "$NET.$((200 + s)).2/24" dev wan0
        nsx "$router" ip link set wan0 up
        nsx "$router" ip route add default via "$NET.$((200 + s)).1"
        local rate=${site_rate[$s]:-$wan}
        shape "$wan_ns" "s$s" "$rate"
        shape "$router" wan0 "$rate"
        # The site's LAN.
        nsx "$router" ip link add br0 type bridge
        nsx "$router" ip addr add "$NET.$((s + 1)).1/24" dev br0
        nsx "$router" ip link set br0 up
        for ((k = 0; k < counts[s]; k++)); do
            local host=wg-$name-$index addr=$NET.$((s + 1)).$((10 + k))
            add_ns "$host"
            ip link add eth0 netns "$host" type veth peer name "h$index" netns "$router"
            nsx "$router" ip link set "h$index" master br0
            nsx "$router" ip link set "h$index" up
            nsx "$host" ip addr add "$addr/24" dev eth0
            nsx "$host" ip link set eth0 up
            nsx "$host" ip route add default via "$NET.$((s + 1)).1"
            shape "$host" eth0 "${host_up[$index]:-$up}"
            shape "$router" "h$index" "${host_down[$index]:-$down}"
            echo "$index $s $host $addr" >>"$STATE/hosts"
            index=$((index + 1))
        done
    done
    trap - EXIT INT TERM
    echo "testbed $name: $index hosts on ${#counts[@]} site(s) (${sites}); host up $up, down $down, WAN links $wan"
    cat "$STATE/hosts"
}

# Kills every process in namespace list "${spaces[@]}".
kill_all() {
    # Processes first (TERM, then KILL whatever is left), so none outlives its
    # namespace's network.
    local ns pid left
    for ns in "${spaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -TERM "$pid" 2>/dev/null || true
        done
    done
    for _ in $(seq 30); do
        left=0
        for ns in "${spaces[@]}"; do
            [[ -n $(ip netns pids "$ns" 2>/dev/null) ]] && left=1
        done
        ((left)) || break
        sleep 0.1
    done
    for ns in "${spaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
}

list_spaces() {
    mapfile -t spaces < <(ip netns list | awk '{print $1}' | grep "^wg-$1-" || true)
}

cmd_stop() {
    local name=$1
    check_name "$name"
    need_root
    local -a spaces
    list_spaces "$name"
    kill_all
    echo "testbed $name: processes stopped"
}

cmd_down() {
    local name=$1
    check_name "$name"
    need_root
    local -a spaces
    list_spaces "$name"
    kill_all
    for ns in "${spaces[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "${STATE_ROOT:?}/$name"
    echo "testbed $name: down (${#spaces[@]} namespaces deleted)"
}

load_hosts() {
    local name=$1
    STATE=$STATE_ROOT/$name
    [[ -f $STATE/hosts ]] || die "no testbed '$name' (run '$0 up $name' first)"
    HOST_NS=()
    HOST_ADDR=()
    local i s ns addr
    while read -r i s ns addr; do
        HOST_NS[i]=$ns
        HOST_ADDR[i]=$addr
    done <"$STATE/hosts"
}

# Expands "1-3,5" into "1 2 3 5".
expand_list() {
    local part n out=()
    IFS=, read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            for ((n = BASH_REMATCH[1]; n <= BASH_REMATCH[2]; n++)); do out+=("$n"); done
        elif [[ $part =~ ^[0-9]+$ ]]; then
            out+=("$part")
        else
            die "cannot read the host list '$1' (write e.g. 1-3,5)"
        fi
    done
    echo "${out[@]}"
}

# Writes host $1's config: role $2, bootstrap list $3 (TOML array items).
write_config() {
    local dir=$1 role=$2 bootstrap=$3
    mkdir -p "$dir/data"
    cat >"$dir/agent.toml" <<EOF
# Generated by scripts/testbed/netns.sh.
data_dir = "$dir/data"
trusted_root = "$ROOT"
role = "$role"

[network]
listen = ["/ip4/0.0.0.0/tcp/$PORT"]
bootstrap = [$bootstrap]
mdns = true
# The kernel's tbf limits every host; the agent's own throttles are off unless
# the run passed --throttle.
upload_bytes_per_sec = $THROTTLE_UP
download_bytes_per_sec = $THROTTLE_DOWN

[api]
listen = "127.0.0.1:7070"

[site]
wan_fetchers = $WAN_FETCHERS
EOF
    if [[ -n $EXTRA ]]; then
        echo >>"$dir/agent.toml"
        sed "s|@DIR@|$dir|g" "$EXTRA" >>"$dir/agent.toml"
    fi
}

# Starts `$BIN $@` in host $1's namespace, its own session, logging to $2.
start() {
    local i=$1 log=$2
    shift 2
    ip netns exec "${HOST_NS[i]}" setsid "$BIN" "$@" </dev/null >"$log" 2>&1 &
    echo $! >"$(dirname "$log")/pid"
    STARTED+=("$i")
}

cmd_run() {
    local name=$1
    shift
    check_name "$name"
    need_root
    load_hosts "$name"
    BIN="" WORK="" ROOT="" WAN_FETCHERS=2 EXTRA="" THROTTLE_UP=0 THROTTLE_DOWN=0
    local seeder="" repo="" agents="" wait=0 only=""
    while (($#)); do
        (($# >= 2)) || die "run: option '$1' needs a value"
        case $1 in
            --bin) BIN=$2 ;;
            --work) WORK=$2 ;;
            --root) ROOT=$2 ;;
            --seeder) seeder=$2 ;;
            --repo) repo=$2 ;;
            --agents) agents=$2 ;;
            --wan-fetchers) WAN_FETCHERS=$2 ;;
            --config-extra) EXTRA=$2 ;;
            --wait) wait=$2 ;;
            --only) only=$2 ;;
            --throttle)
                [[ $2 =~ ^([0-9]+):([0-9]+)$ ]] || die "run: --throttle takes UP:DOWN in bytes per second, not '$2'"
                THROTTLE_UP=${BASH_REMATCH[1]} THROTTLE_DOWN=${BASH_REMATCH[2]}
                ;;
            *) die "run: unknown option '$1' (see the top of $0)" ;;
        esac
        shift 2
    done
    [[ -x $BIN ]] || die "run: --bin must name the waveguard executable, not '$BIN'"
    [[ -n $WORK ]] || die "run: --work DIR is required"
    [[ -f $ROOT ]] || die "run: --root must name the trusted root metadata (1.root.json), not '$ROOT'"
    [[ -z $EXTRA || -f $EXTRA ]] || die "run: --config-extra '$EXTRA' is not a file"
    [[ $WAN_FETCHERS =~ ^[0-9]+$ ]] || die "run: --wan-fetchers takes a number"
    [[ $wait =~ ^[0-9]+$ ]] || die "run: --wait takes seconds"
    [[ $only =~ ^(|seeder|agents)$ ]] || die "run: --only takes seeder or agents"
    [[ -z $only || -n $seeder ]] || die "run: --only needs --seeder"
    BIN=$(realpath "$BIN")
    ROOT=$(realpath "$ROOT")
    mkdir -p "$WORK"
    WORK=$(realpath "$WORK")
    local -a hosts
    if [[ -n $agents ]]; then
        read -ra hosts <<<"$(expand_list "$agents")"
    else
        hosts=()
        for i in "${!HOST_NS[@]}"; do
            [[ $i == "$seeder" ]] || hosts+=("$i")
        done
    fi
    STARTED=()
    local bootstrap=""
    if [[ -n $seeder ]]; then
        [[ -n ${HOST_NS[seeder]:-} ]] || die "run: there is no host $seeder"
        [[ -d $repo ]] || die "run: --seeder needs --repo, the release directory to serve"
        local dir=$WORK/host$seeder
        mkdir -p "$dir/data"
        # The seeder's key is made here so the agents' bootstrap address is known.
        if [[ ! -f $dir/peer-id ]]; then
            [[ ! -f $dir/data/node.key ]] || die "run: $dir/data/node.key exists without $dir/peer-id"
            "$BIN" keygen --out "$dir/data/node.key" | sed -n 's/^peer id: *//p' >"$dir/peer-id"
        fi
        bootstrap="\"/ip4/${HOST_ADDR[seeder]}/tcp/$PORT/p2p/$(cat "$dir/peer-id")\""
        if [[ $only != agents ]]; then
            write_config "$dir" seeder ""
            start "$seeder" "$dir/log" seed "$(realpath "$repo")" --config "$dir/agent.toml"
        fi
    fi
    [[ $only == seeder ]] && hosts=()
    for i in "${hosts[@]}"; do
        [[ -n ${HOST_NS[i]:-} ]] || die "run: there is no host $i"
        [[ $i != "$seeder" ]] || die "run: host $i is the seeder"
        local dir=$WORK/host$i
        write_config "$dir" endpoint "$bootstrap"
        start "$i" "$dir/log" agent --config "$dir/agent.toml"
    done
    echo "testbed $name: started ${#STARTED[@]} process(es) on host(s) ${STARTED[*]}; logs in $WORK/host*/log"
    ((wait > 0)) || return 0
    local deadline=$((SECONDS + wait)) pending
    while :; do
        pending=()
        for i in "${STARTED[@]}"; do
            nsx "${HOST_NS[i]}" "$BIN" status >/dev/null 2>&1 || pending+=("$i")
        done
        ((${#pending[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            die "run: host(s) ${pending[*]} did not answer 'waveguard status' within ${wait}s (see $WORK/host*/log)"
        fi
        sleep 0.2
    done
    echo "testbed $name: every process answers its API"
}

cmd_hosts() {
    check_name "$1"
    STATE=$STATE_ROOT/$1
    [[ -f $STATE/hosts ]] || die "no testbed '$1'"
    cat "$STATE/hosts"
}

cmd_exec() {
    local name=$1 i=$2
    shift 2
    check_name "$name"
    need_root
    load_hosts "$name"
    [[ -n ${HOST_NS[i]:-} ]] || die "exec: there is no host $i"
    exec ip netns exec "${HOST_NS[i]}" "$@"
}

(($# >= 2)) || usage
command=$1
shift
case $command in
    up) cmd_up "$@" ;;
    run) cmd_run "$@" ;;
    down) cmd_down "$@" ;;
    stop) cmd_stop "$@" ;;
    hosts) cmd_hosts "$@" ;;
    exec) (($# >= 3)) || usage; cmd_exec "$@" ;;
    *) usage ;;
esac
