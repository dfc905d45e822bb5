#!/bin/bash
# tests/slurm/slurm-local.sh up|down -- a single-node Slurm cluster on this
# machine for tests (as root, without systemd).
#
# `up` writes slurm.conf from the short host name, the CPU count and memory,
# starts munged only when no munge daemon answers, then slurmctld and slurmd,
# and waits until the node is idle.  `down` stops only the daemons `up`
# started, by their PID files.  State, logs and PID files live under
# $SLURM_DIR (default build/slurm).  Callers of sbatch/squeue/sinfo need
# SLURM_CONF=$SLURM_DIR/slurm.conf in their environment.
set -euo pipefail
SLURM_DIR=$(realpath -m "${SLURM_DIR:-build/slurm}")
export SLURM_CONF=$SLURM_DIR/slurm.conf
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

write_conf() {
    cat <<CONF
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/log/jobcomp.txt
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

# stop_pidfile FILE: stops the daemon whose PID FILE holds, and waits for it.
stop_pidfile() {
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
        sleep 0.2
    done
    echo "slurm-local: pid $pid did not stop" >&2
    return 1
}

munge_answers() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

up() {
    mkdir -p "$SLURM_DIR"/{state,spool,log,run}
    write_conf > "$SLURM_CONF"
    if ! munge_answers; then
        install -d -o munge -g munge -m 755 /run/munge       # absent right after installation
        [ -f /etc/munge/munge.key ] || mungekey --create
        chown munge:munge /etc/munge/munge.key
        runuser -u munge -- /usr/sbin/munged                 # writes /run/munge/munged.pid
        touch "$SLURM_DIR/run/munged.ours"
        for _ in $(seq 25); do munge_answers && break; sleep 0.2; done
    fi
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 100); do
        sinfo -h -o %t 2>/dev/null | grep -qx idle && return 0
        sleep 0.2
    done
    echo "slurm-local: node not idle; see $SLURM_DIR/log" >&2
    return 1
}

down() {
    local rc=0
    stop_pidfile "$SLURM_DIR/run/slurmd.pid" || rc=1
    stop_pidfile "$SLURM_DIR/run/slurmctld.pid" || rc=1        # slurmscriptd exits with it
    if [ -f "$SLURM_DIR/run/munged.ours" ]; then               # only a munged that `up` started
        stop_pidfile /run/munge/munged.pid && rm -f "$SLURM_DIR/run/munged.ours" || rc=1
    fi
    return $rc
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
