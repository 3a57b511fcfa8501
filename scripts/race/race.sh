#!/usr/bin/env bash
# Side-by-side: one seeder distributes the same file to N hosts with
# libtorrent and with waveguard, over the same network namespaces and the same
# `tc tbf` limits (scripts/testbed/netns.sh: one site, every host on one
# bridge, every host's upload and download shaped to --rate). Each tool gets
# its runs in turn (waveguard, libtorrent, waveguard, ...), on a fresh data
# directory each time, and the script prints per-run times, medians, their
# ratio and the P2P lower bound.
#
# A run's time is from starting the N downloaders (the seeder is already up
# and serving) until the last of them has the whole file verified:
#   waveguard:  the artifact is in data/staging/<release>/ (assembled, blake3 checked)
#   libtorrent: torrent_finished_alert (every piece SHA-1 checked)
#
# Usage (as root):
#   race.sh [--hosts 16] [--size 256MiB] [--rate 100mbit] [--runs 3]
#           [--chunk-avg 1MiB] [--piece-kib 0] [--tools waveguard,libtorrent]
#           [--bin target/release/waveguard] [--work DIR] [--name race]
#           [--agent-throttle off|up|both] [--sysctl KEY=VALUE]...
#
# --agent-throttle tells the waveguard processes their own rate as well (their
# config's upload and/or download bytes per second, set to --rate's payload
# share), on top of the kernel's tbf; off (the default) leaves them unlimited.
# --sysctl sets a network sysctl in every host's namespace, for both tools
# (e.g. net.ipv4.tcp_congestion_control=bbr, net.ipv4.tcp_notsent_lowat=131072).
#
# Needs: root, ip/tc, /usr/bin/python3 with libtorrent (apt-get install
# python3-libtorrent), and a release build of waveguard
# (cargo build --release -p waveguard-agent).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
netns=$here/../testbed/netns.sh
PY=${PYTHON:-/usr/bin/python3}

hosts=16 size=256MiB rate=100mbit runs=3 chunk_avg=1MiB piece_kib=0
tools=waveguard,libtorrent name=race agent_throttle=off
sysctls=()
bin=$repo_root/target/release/waveguard work=""
while (($#)); do
    (($# >= 2)) || { echo "race.sh: option '$1' needs a value" >&2; exit 2; }
    case $1 in
        --hosts) hosts=$2 ;;
        --size) size=$2 ;;
        --rate) rate=$2 ;;
        --runs) runs=$2 ;;
        --chunk-avg) chunk_avg=$2 ;;
        --piece-kib) piece_kib=$2 ;;
        --tools) tools=$2 ;;
        --bin) bin=$2 ;;
        --work) work=$2 ;;
        --name) name=$2 ;;
        --agent-throttle) agent_throttle=$2 ;;
        --sysctl) sysctls+=("$2") ;;
        *) echo "race.sh: unknown option '$1' (see the top of $0)" >&2; exit 2 ;;
    esac
    shift 2
done

die() {
    echo "race.sh: $*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || die "must run as root (network namespaces and tc)"
if [[ $tools == *libtorrent* ]] && ! "$PY" -c 'import libtorrent' 2>/dev/null; then
    die "$PY cannot import libtorrent: install it with 'apt-get install python3-libtorrent' (Debian's 2.0.x; set PYTHON= to use another interpreter that has it)"
fi
if [[ $tools == *waveguard* ]] && [[ ! -x $bin ]]; then
    die "no waveguard binary at $bin: build it with 'cargo build --release -p waveguard-agent' or pass --bin"
fi
bin=$(realpath "$bin")

[[ $size =~ ^([0-9]+)(KiB|MiB|GiB)$ ]] || die "cannot read --size '$size' (write e.g. 256MiB)"
case ${BASH_REMATCH[2]} in
    KiB) bytes=$((BASH_REMATCH[1] << 10)) ;;
    MiB) bytes=$((BASH_REMATCH[1] << 20)) ;;
    GiB) bytes=$((BASH_REMATCH[1] << 30)) ;;
esac
[[ $rate =~ ^([0-9]+)mbit$ ]] || die "--rate takes Mbit/s, e.g. 100mbit"
rate_bytes=$((BASH_REMATCH[1] * 1000 * 1000 / 8))
# The agents' own limits count payload; tbf counts headers too (~3 % for TCP + Noise + yamux).
payload_rate=$((rate_bytes * 97 / 100))
case $agent_throttle in
    off) throttle=0:0 ;;
    up) throttle=$payload_rate:0 ;;
    both) throttle=$payload_rate:$payload_rate ;;
    *) die "--agent-throttle takes off, up or both" ;;
esac

[[ -n $work ]] || work=$(mktemp -d /var/tmp/wg-race.XXXXXX)
mkdir -p "$work"
work=$(realpath "$work")
echo "race: work directory $work"

# The file, once: pseudo-random, so nothing compresses or deduplicates.
if [[ ! -f $work/src/app.bin ]] || [[ $(stat -c %s "$work/src/app.bin") != "$bytes" ]]; then
    mkdir -p "$work/src"
    head -c "$bytes" /dev/urandom >"$work/src/app.bin"
fi

if [[ $tools == *waveguard* ]]; then
    v=$work/vendor
    rm -rf "$v"
    mkdir -p "$v"
    "$bin" keygen --out "$v/vendor.key" >/dev/null
    "$bin" root init --out "$v/repo" --root-key "$v/vendor.key" --targets-key "$v/vendor.key" \
        --snapshot-key "$v/vendor.key" --timestamp-key "$v/vendor.key" >/dev/null
    # Wave 0 opens in a day: agents prefetch and stage; nobody installs.
    "$bin" publish "$work/src/app.bin" --repo "$v/repo" --product acme --version 1.0 \
        --key "$v/vendor.key" --start "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)" \
        --chunk-avg "$chunk_avg" >"$v/publish.log"
fi
if [[ $tools == *libtorrent* ]]; then
    "$PY" "$here/lt_peer.py" make "$work/src/app.bin" "$work/app.torrent" --piece-kib "$piece_kib" |
        tee "$work/torrent.log"
fi

"$netns" down "$name" >/dev/null 2>&1 || true
"$netns" up "$name" --sites $((hosts + 1)) --up "$rate" --down "$rate" >"$work/testbed.log"
trap '"$netns" down "$name" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
ns() { echo "wg-$name-$1"; }
for kv in ${sysctls[@]+"${sysctls[@]}"}; do
    for ((i = 0; i <= hosts; i++)); do
        ip netns exec "$(ns "$i")" sysctl -qw "$kv" || die "cannot set sysctl '$kv' in host $i's namespace"
    done
done
ip_of() { "$netns" hosts "$name" | awk -v i="$1" '$1 == i {print $4}'; }
peers=$(for ((i = 0; i <= hosts; i++)); do ip_of "$i"; done | paste -sd,)

now() { date +%s.%N; }
# CPU busy share of the whole machine between two /proc/stat samples.
cpu_sample() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
cpu_busy() {
    local b0 t0 b1 t1
    read -r b0 t0 <<<"$1"
    read -r b1 t1 <<<"$2"
    awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN {printf "%.0f", 100 * b / (t ? t : 1)}'
}
# CPU seconds (user + system) used so far by every process on hosts 0..N.
proc_cpu() {
    local i pid ticks=0 t
    for ((i = 0; i <= hosts; i++)); do
        for pid in $(ip netns pids "$(ns "$i")"); do
            # utime and stime are fields 14 and 15; the name (field 2) may hold spaces.
            t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
            ticks=$((ticks + ${t:-0}))
        done
    done
    echo "scale=1; $ticks / $(getconf CLK_TCK)" | bc
}
tx_bytes() { ip netns exec "$(ns "$1")" cat /sys/class/net/eth0/statistics/tx_bytes; }
# Packets every tbf of the testbed has dropped so far (queue full: the senders overran the rate).
tbf_drops() {
    local n total=0 d
    for n in $(ip netns list | awk -v p="wg-$name-" 'index($1, p) == 1 {print $1}'); do
        d=$(ip netns exec "$n" tc -s qdisc show 2>/dev/null |
            awk '/^qdisc tbf/ {t = 1; next} t && /dropped/ {gsub(/[(),]/, ""); for (i = 1; i < NF; i++) if ($i == "dropped") s += $(i + 1); t = 0} END {print s + 0}')
        total=$((total + d))
    done
    echo "$total"
}

results=$work/results.tsv
echo -e "tool\trun\tseconds\tfirst_s\tseeder_tx_copies\tcpu_busy_pct\tprocess_cpu_s\ttbf_drops" >"$results"

# Waits until every leecher 1..hosts is done per $1 (a function of the host
# index, true when done); prints the first and last finish times after t0.
wait_all() {
    local done_fn=$1 t0=$2 limit=$3 first="" i n
    local -a fin=()
    while :; do
        n=0
        for ((i = 1; i <= hosts; i++)); do
            if [[ -z ${fin[i]:-} ]] && "$done_fn" "$i"; then
                fin[i]=$(now)
                [[ -n $first ]] || first=${fin[i]}
            fi
            [[ -n ${fin[i]:-} ]] && n=$((n + 1))
        done
        ((n == hosts)) && break
        if (($(date +%s) - ${t0%.*} > limit)); then
            echo "race: only $n of $hosts finished within ${limit}s" >&2
            return 1
        fi
        sleep 0.1
    done
    local last=${fin[1]}
    for ((i = 1; i <= hosts; i++)); do
        [[ $(echo "${fin[i]} > $last" | bc) == 1 ]] && last=${fin[i]}
    done
    echo "$first $last"
}

# The agent renames the artifact into staging/<release>/ only once it is
# assembled and its blake3 hash checked; until then it is a .partial file.
wg_done() {
    local f
    for f in "$W/host$1"/data/staging/*/*; do
        [[ -f $f && $f != *.partial ]] && return 0
    done
    return 1
}
lt_done() { [[ -f $W/lt$1/done ]]; }

run_waveguard() {
    local r=$1
    W=$work/run-wg-$r
    rm -rf "$W"
    "$netns" run "$name" --bin "$bin" --work "$W" --root "$v/repo/metadata/1.root.json" \
        --seeder 0 --repo "$v/repo" --only seeder --wait 60 --throttle "$throttle" >/dev/null
    # Serving once its status shows every chunk.
    local t=$SECONDS
    until ip netns exec "$(ns 0)" "$bin" status 2>/dev/null | grep -q '(100%)'; do
        ((SECONDS - t < 120)) || die "the waveguard seeder did not come up (see $W/host0/log)"
        sleep 0.2
    done
    local tx0 c0 t0 span
    tx0=$(tx_bytes 0)
    c0=$(cpu_sample)
    P0=$(proc_cpu)
    D0=$(tbf_drops)
    t0=$(now)
    RUST_LOG=${RUST_LOG:-warn} "$netns" run "$name" --bin "$bin" --work "$W" \
        --root "$v/repo/metadata/1.root.json" --seeder 0 --repo "$v/repo" --only agents \
        --throttle "$throttle" >/dev/null
    span=$(wait_all wg_done "$t0" 600) || die "waveguard run $r did not finish (logs in $W)"
    record waveguard "$r" "$t0" "$span" "$tx0" "$c0"
    for ((i = 0; i <= hosts; i++)); do
        ip netns exec "$(ns "$i")" "$bin" status 2>/dev/null | grep 'traffic lan' | sed "s/^ */host $i: /"
    done >"$W/traffic.txt"
    "$netns" stop "$name" >/dev/null
    rm -rf "$W"/host*/data
}

run_libtorrent() {
    local r=$1
    W=$work/run-lt-$r
    rm -rf "$W"
    mkdir -p "$W/lt0"
    ln "$work/src/app.bin" "$W/lt0/app.bin"
    ip netns exec "$(ns 0)" setsid "$PY" "$here/lt_peer.py" seed "$work/app.torrent" "$W/lt0" \
        --ip "$(ip_of 0)" --ready "$W/lt0/ready" </dev/null >"$W/lt0/log" 2>&1 &
    local t=$SECONDS
    until [[ -f $W/lt0/ready ]]; do
        ((SECONDS - t < 120)) || die "the libtorrent seeder did not come up (see $W/lt0/log)"
        sleep 0.1
    done
    local tx0 c0 t0 span i
    tx0=$(tx_bytes 0)
    c0=$(cpu_sample)
    P0=$(proc_cpu)
    D0=$(tbf_drops)
    t0=$(now)
    for ((i = 1; i <= hosts; i++)); do
        mkdir -p "$W/lt$i"
        ip netns exec "$(ns "$i")" setsid "$PY" "$here/lt_peer.py" leech "$work/app.torrent" "$W/lt$i" \
            --ip "$(ip_of "$i")" --peers "$peers" --done "$W/lt$i/done" </dev/null >"$W/lt$i/log" 2>&1 &
    done
    span=$(wait_all lt_done "$t0" 600) || die "libtorrent run $r did not finish (logs in $W)"
    record libtorrent "$r" "$t0" "$span" "$tx0" "$c0"
    "$netns" stop "$name" >/dev/null
    wait 2>/dev/null || true
    rm -f "$W"/lt*/app.bin
}

# Appends one run's row: its time, the first finisher's, the seeder's upload in
# copies of the file (kernel counter: payload plus headers), the machine's CPU
# use and the CPU time the tool's processes used during the run (kernel network
# work done in softirq context is not in it).
record() {
    local tool=$1 r=$2 t0=$3 span=$4 tx0=$5 c0=$6 first last tx secs first_s cpu pcpu drops
    read -r first last <<<"$span"
    tx=$(tx_bytes 0)
    cpu=$(cpu_busy "$c0" "$(cpu_sample)")
    pcpu=$(echo "$(proc_cpu) - $P0" | bc)
    drops=$(($(tbf_drops) - D0))
    secs=$(echo "$last - $t0" | bc)
    first_s=$(echo "$first - $t0" | bc)
    printf "%s\t%d\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\n" "$tool" "$r" "$secs" "$first_s" \
        "$(echo "($tx - $tx0) / $bytes" | bc -l)" "$cpu" "$pcpu" "$drops" | tee -a "$results"
}

echo "race: $hosts downloaders + 1 seeder, $size, every host ${rate} up and down (tc tbf), $runs runs each, waveguard's own throttles: $agent_throttle, sysctls: ${sysctls[*]:-none}"
for ((r = 1; r <= runs; r++)); do
    [[ $tools == *waveguard* ]] && run_waveguard "$r"
    [[ $tools == *libtorrent* ]] && run_libtorrent "$r"
done

bound=$(echo "$bytes / $rate_bytes" | bc -l)
median() { awk -v t="$1" '$1 == t {print $3}' "$results" | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
wg=$(median waveguard)
lt=$(median libtorrent)
echo
echo "| tool | runs (s) | median (s) | / lower bound |"
echo "|---|---|---|---|"
for t in waveguard libtorrent; do
    m=$(median $t)
    [[ -n $m ]] || continue
    printf "| %s | %s | %.1f | %.2f |\n" "$t" \
        "$(awk -v t=$t '$1 == t {printf "%s%.1f", sep, $3; sep=", "}' "$results")" "$m" \
        "$(echo "$m / $bound" | bc -l)"
done
printf "\nP2P lower bound max(F/u_s, F/d, N*F/(u_s + N*u)) = F/u = %.1f s (F = %s, u = d = %s)\n" \
    "$bound" "$size" "$rate"
if [[ -n $wg && -n $lt ]]; then
    printf "ratio waveguard / libtorrent (medians) = %.2f\n" "$(echo "$wg / $lt" | bc -l)"
fi
echo "per-run rows (first finisher, seeder upload in copies, machine CPU busy %, the tool's CPU seconds, packets the tbf queues dropped) in $results"
echo "the file and the release directory stay in $work (about twice --size); remove it when done"
