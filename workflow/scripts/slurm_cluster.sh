#!/usr/bin/env bash
# slurm_cluster.sh — a throwaway single-node SLURM cluster on 127.0.0.1 for
# testing the blockswap workflow with `snakemake --executor slurm`.
#
# Usage:
#   eval "$(workflow/scripts/slurm_cluster.sh start)"   # prints export lines
#   workflow/scripts/slurm_cluster.sh status
#   workflow/scripts/slurm_cluster.sh env               # re-print the export lines
#   workflow/scripts/slurm_cluster.sh stop
#
# `start` prints (on stdout, nothing else goes there):
#   export SLURM_CONF=<state dir>/slurm.conf
#   export SLURM_PARTITION=<partition name>
# All progress / error messages go to stderr.
#
# Needs root and Debian's apt (installs slurmctld slurmd slurm-client munge if
# missing). Works without systemd: every daemon is started by hand and its PID
# recorded, and `stop` kills exactly those PIDs (after cancelling the cluster's
# jobs). The config lives in the state directory and the SLURM tools find it
# through $SLURM_CONF. One exception: snakemake's slurm-jobstep plugin strips
# every SLURM_* variable (SLURM_CONF included) before it calls `srun` inside a
# job, so that srun only finds the compiled-in default /etc/slurm/slurm.conf.
# `start` therefore makes /etc/slurm/slurm.conf a symlink to our config if no
# such file exists (and refuses to start if a foreign one does); `stop` removes
# the symlink only if it still points at our config. munged runs on a private
# socket and key in the state directory, so a system munged (if any) is
# neither used nor touched.
#
# Environment knobs (all optional):
#   SLURM_STATE_DIR      state directory            (default /tmp/blockswap-slurm)
#   SLURM_PARTITION      partition name             (default blockswap)
#   SLURM_CTLD_PORT      slurmctld port             (default 6817)
#   SLURMD_PORT          slurmd port                (default 6818)
#   SLURM_START_TIMEOUT  seconds to wait for idle   (default 60)
#   SLURM_APT_TIMEOUT    seconds for apt-get steps  (default 600)
set -euo pipefail

STATE="${SLURM_STATE_DIR:-/tmp/blockswap-slurm}"
PARTITION="${SLURM_PARTITION:-blockswap}"
CTLD_PORT="${SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURMD_PORT:-6818}"
START_TIMEOUT="${SLURM_START_TIMEOUT:-60}"
APT_TIMEOUT="${SLURM_APT_TIMEOUT:-600}"
PACKAGES=(slurmctld slurmd slurm-client munge)
MARKER="# managed-by: blockswap workflow/scripts/slurm_cluster.sh"
ETC_CONF=/etc/slurm/slurm.conf

CONF="$STATE/slurm.conf"
RUN="$STATE/run"
LOG="$STATE/log"
MUNGE_DIR="$STATE/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"

log() { printf 'slurm_cluster: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Seconds since the epoch; used for bounded waits.
now() { date +%s; }

need_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (installs packages, starts munged/slurmctld/slurmd)"
}

have_slurm() {
    command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 \
        && command -v sbatch >/dev/null 2>&1 && command -v munged >/dev/null 2>&1
}

install_packages() {
    if have_slurm; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 \
        || die "SLURM is not installed and apt-get is unavailable; install ${PACKAGES[*]} by hand"
    log "installing ${PACKAGES[*]} with apt-get (bounded to ${APT_TIMEOUT}s per step)"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for the dpkg lock rather than failing when someone else runs apt.
    timeout -k 10 "$APT_TIMEOUT" apt-get -o DPkg::Lock::Timeout=300 -qq update >&2 \
        || die "apt-get update failed"
    # policy-rc.d forbids the packages' postinst scripts from starting
    # daemons of their own (we start ours by hand below).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    local rc=0
    timeout -k 10 "$APT_TIMEOUT" apt-get -o DPkg::Lock::Timeout=300 -qq install -y \
        --no-install-recommends "${PACKAGES[@]}" >&2 || rc=$?
    [[ "$created_policy" -eq 1 ]] && rm -f "$policy"
    [[ "$rc" -eq 0 ]] || die "apt-get install ${PACKAGES[*]} failed (rc=$rc)"
    have_slurm || die "packages installed but slurmctld/slurmd/sbatch/munged not on PATH"
}

# proc_is PID COMM: true if PID is a live process whose comm is COMM.
proc_is() {
    local pid="$1" comm="$2"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]
}

# read_pid PIDFILE: the PID recorded in PIDFILE (empty if none).
read_pid() {
    [[ -s "$1" ]] || return 0
    tr -dc '0-9' <"$1" 2>/dev/null || true
}

# pid_alive PIDFILE COMM: true if PIDFILE names a live process whose comm is COMM.
pid_alive() {
    proc_is "$(read_pid "$1")" "$2"
}

# kill_pidfile PIDFILE COMM: TERM, wait up to 15 s for that very process to
# exit (daemons delete their pidfile early, so we poll the PID, not the file),
# then KILL. Touches nothing but the recorded PID, and only if its comm matches.
kill_pidfile() {
    local pidfile="$1" comm="$2" pid deadline
    pid="$(read_pid "$pidfile")"
    if ! proc_is "$pid" "$comm"; then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $comm (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(( $(now) + 15 ))
    while proc_is "$pid" "$comm" && (( $(now) < deadline )); do
        sleep 0.2
    done
    if proc_is "$pid" "$comm"; then
        log "$comm (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$(( $(now) + 5 ))
        while proc_is "$pid" "$comm" && (( $(now) < deadline )); do
            sleep 0.2
        done
    fi
    rm -f "$pidfile"
}

env_lines() {
    local part="$PARTITION"
    if [[ -f "$CONF" ]]; then
        # The partition of the running cluster, whatever $SLURM_PARTITION says now.
        part="$(sed -n 's/^PartitionName=\([^ ]*\).*/\1/p' "$CONF" | head -n1)"
        part="${part:-$PARTITION}"
    fi
    printf 'export SLURM_CONF=%s\n' "$CONF"
    printf 'export SLURM_PARTITION=%s\n' "$part"
}

cluster_up() {
    # Every daemon we started is alive and the node answers.
    pid_alive "$MUNGE_DIR/munged.pid" munged \
        && pid_alive "$RUN/slurmctld.pid" slurmctld \
        && pid_alive "$RUN/slurmd.pid" slurmd \
        && etc_conf_is_ours \
        && SLURM_CONF="$CONF" timeout 10 sinfo -h -o '%T' >/dev/null 2>&1
}

port_in_use() {
    local port="$1"
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn "sport = :$port" 2>/dev/null | grep -q .
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

write_config() {
    local host cpus mem_mb slurm_user
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
    (( mem_mb > 512 )) || mem_mb=512
    if getent passwd slurm >/dev/null; then slurm_user=slurm; else slurm_user=root; fi

    mkdir -p "$STATE" "$RUN" "$LOG" "$STATE/ctld" "$STATE/slurmd"
    chmod 0755 "$STATE" "$RUN" "$LOG"
    chown "$slurm_user:" "$RUN" "$LOG" "$STATE/ctld"

    cat >"$CONF" <<EOF
$MARKER
# Single-node test cluster; regenerate with \`slurm_cluster.sh start\`.
ClusterName=blockswap
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=${slurm_user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${MUNGE_SOCKET}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
# Keep finished jobs visible to \`squeue --states=all\` long enough for
# snakemake's squeue-based status checks (needs >= 120 s).
MinJobAge=300
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/slurmd
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOG}/slurmctld.log
SlurmdLogFile=${LOG}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 0644 "$CONF"
    env_lines >"$STATE/env"
}

# /etc/slurm/slurm.conf is "ours" if it is a symlink to $CONF.
etc_conf_is_ours() {
    [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$CONF" ]]
}

check_etc_conf() {
    if [[ -e "$ETC_CONF" || -L "$ETC_CONF" ]] && ! etc_conf_is_ours; then
        die "$ETC_CONF exists and is not ours (not a symlink to $CONF); refusing to start a test cluster next to another SLURM config (srun inside jobs would read that file)"
    fi
}

link_etc_conf() {
    check_etc_conf
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -sfn "$CONF" "$ETC_CONF"
}

unlink_etc_conf() {
    if etc_conf_is_ours; then
        rm -f "$ETC_CONF"
    fi
}

start_munged() {
    if pid_alive "$MUNGE_DIR/munged.pid" munged; then
        return 0
    fi
    getent passwd munge >/dev/null || die "user 'munge' does not exist (munge package broken?)"
    mkdir -p "$MUNGE_DIR"
    chown munge: "$MUNGE_DIR"
    chmod 0755 "$MUNGE_DIR"  # munged wants o+x on the socket dir
    if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
        # A private key for this throwaway cluster (munge wants 1024+ bytes).
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    fi
    chown munge: "$MUNGE_DIR/munge.key"
    chmod 0400 "$MUNGE_DIR/munge.key"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    log "starting munged (socket $MUNGE_SOCKET)"
    timeout 30 runuser -u munge -- munged \
        --socket="$MUNGE_SOCKET" \
        --key-file="$MUNGE_DIR/munge.key" \
        --seed-file="$MUNGE_DIR/munge.seed" \
        --log-file="$MUNGE_DIR/munged.log" \
        --pid-file="$MUNGE_DIR/munged.pid" \
        || die "munged failed to start; see $MUNGE_DIR/munged.log"
    local deadline=$(( $(now) + 15 ))
    until [[ -S "$MUNGE_SOCKET" ]] && pid_alive "$MUNGE_DIR/munged.pid" munged; do
        (( $(now) < deadline )) || die "munged did not come up within 15 s; see $MUNGE_DIR/munged.log"
        sleep 0.2
    done
    timeout 10 munge -S "$MUNGE_SOCKET" -n </dev/null | timeout 10 unmunge -S "$MUNGE_SOCKET" >/dev/null \
        || die "munge round-trip failed on $MUNGE_SOCKET"
}

wait_pidfile() {
    local pidfile="$1" comm="$2" logfile="$3" deadline
    deadline=$(( $(now) + 20 ))
    until pid_alive "$pidfile" "$comm"; do
        (( $(now) < deadline )) || die "$comm did not start within 20 s; see $logfile"
        sleep 0.2
    done
}

wait_idle() {
    local deadline state="" host
    host="$(hostname -s)"
    deadline=$(( $(now) + START_TIMEOUT ))
    while :; do
        state="$(SLURM_CONF="$CONF" timeout 10 sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n1 || true)"
        case "$state" in
            idle|mixed|allocated) break ;;
            drain*|down*|inval*|fail*)
                # A node left down by a previous run: resume it.
                SLURM_CONF="$CONF" timeout 10 scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        if (( $(now) >= deadline )); then
            log "node state after ${START_TIMEOUT}s: '${state:-none}'"
            tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 2>/dev/null || true
            die "node never became idle"
        fi
        sleep 0.5
    done
    log "node $host is $state in partition $PARTITION"
}

cmd_start() {
    need_root
    install_packages
    if [[ -f "$CONF" ]] && cluster_up; then
        log "already running (state dir $STATE)"
        env_lines
        return 0
    fi
    if [[ -d "$STATE" ]]; then
        # Half-started or stale state: clean up what we own before starting again.
        cmd_stop_quiet
    fi
    check_etc_conf
    port_in_use "$CTLD_PORT" && die "port $CTLD_PORT is taken (another slurmctld?); set SLURM_CTLD_PORT"
    port_in_use "$SLURMD_PORT" && die "port $SLURMD_PORT is taken (another slurmd?); set SLURMD_PORT"

    local t0; t0=$(now)
    trap 'log "start failed; logs are in $LOG; run \"$0 stop\" to clean up"' EXIT
    write_config
    link_etc_conf
    start_munged
    log "starting slurmctld"
    # -i: ignore saved state from an earlier run of this state dir.
    SLURM_CONF="$CONF" timeout 30 slurmctld -i -f "$CONF" \
        || die "slurmctld failed to start; see $LOG/slurmctld.log"
    wait_pidfile "$RUN/slurmctld.pid" slurmctld "$LOG/slurmctld.log"
    log "starting slurmd"
    SLURM_CONF="$CONF" timeout 30 slurmd -f "$CONF" \
        || die "slurmd failed to start; see $LOG/slurmd.log"
    wait_pidfile "$RUN/slurmd.pid" slurmd "$LOG/slurmd.log"
    wait_idle
    trap - EXIT
    log "cluster up in $(( $(now) - t0 ))s; state dir $STATE"
    env_lines
}

cancel_jobs() {
    # Cancel every job of *this* cluster (selected by its config), so that no
    # slurmstepd / job processes outlive the daemons. Bounded.
    [[ -f "$CONF" ]] || return 0
    pid_alive "$RUN/slurmctld.pid" slurmctld || return 0
    local deadline
    SLURM_CONF="$CONF" timeout 10 scancel --full --partition="$PARTITION" >/dev/null 2>&1 || true
    deadline=$(( $(now) + 20 ))
    while (( $(now) < deadline )); do
        if [[ -z "$(SLURM_CONF="$CONF" timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null || true)" ]]; then
            break
        fi
        sleep 0.5
    done
}

cmd_stop_quiet() {
    cancel_jobs
    kill_pidfile "$RUN/slurmd.pid" slurmd
    kill_pidfile "$RUN/slurmctld.pid" slurmctld
    kill_pidfile "$MUNGE_DIR/munged.pid" munged
    unlink_etc_conf
    if [[ -f "$CONF" ]] && ! head -n1 "$CONF" | grep -qF "$MARKER"; then
        die "$CONF was not written by this script; refusing to delete $STATE"
    fi
    rm -rf -- "$STATE"
}

cmd_stop() {
    need_root
    if [[ ! -d "$STATE" ]]; then
        log "not running (no state dir $STATE)"
        return 0
    fi
    cmd_stop_quiet
    log "stopped; removed $STATE"
}

cmd_status() {
    if [[ ! -f "$CONF" ]]; then
        log "not running (no $CONF)"
        return 3
    fi
    local d rc=0
    for d in munged slurmctld slurmd; do
        local pf="$RUN/$d.pid"
        [[ "$d" == munged ]] && pf="$MUNGE_DIR/munged.pid"
        if pid_alive "$pf" "$d"; then
            log "$d: running (pid $(read_pid "$pf"))"
        else
            log "$d: not running"; rc=3
        fi
    done
    if [[ "$rc" -eq 0 ]]; then
        SLURM_CONF="$CONF" timeout 10 sinfo >&2 || rc=3
        SLURM_CONF="$CONF" timeout 10 squeue >&2 || true
    fi
    [[ "$rc" -eq 0 ]] && env_lines
    return "$rc"
}

case "${1:-}" in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    env)    [[ -f "$CONF" ]] || die "not running"; env_lines ;;
    *)      echo "usage: $0 {start|stop|status|env}" >&2; exit 2 ;;
esac
