#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying and testing profiles/slurm-local.
#   sudo scripts/local-slurm.sh start    install (if missing), configure and start munge + slurmctld + slurmd
#   sudo scripts/local-slurm.sh stop     stop what `start` started
#   scripts/local-slurm.sh status
# Idempotent. It touches only SLURM's and munge's own files and refuses to take over a SLURM
# it did not start (unless --force).
set -euo pipefail

ACTION=${1:-status}
FORCE=${2:-}
MARKER=/run/peftlab-local-slurm
CONF_DIR=/etc/slurm
PARTITION=debug

need_root() { [ "$(id -u)" = 0 ] || { echo "local-slurm: run as root (sudo) to $ACTION a cluster" >&2; exit 2; }; }
running() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }  # alive, not a zombie

install() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "local-slurm: installing slurm-wlm and munge from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
}

configure() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # RealMemory below the machine's
  mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/log/munge /var/lib/munge
  cat > "$CONF_DIR/slurm.conf" <<CONF
# Written by scripts/local-slurm.sh: one node, one partition, no accounting.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  # No cgroup.conf: slurmd then loads the cgroup/v1 plugin, which works inside containers too.
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
}

start() {
  need_root
  if { running slurmctld || running slurmd; } && [ ! -e "$MARKER" ] && [ "$FORCE" != --force ]; then
    echo "local-slurm: a SLURM this script did not start is running here; refusing (use --force to take it over)" >&2
    exit 3
  fi
  install
  configure
  touch "$MARKER"
  running munged || su -s /bin/sh munge -c "munged" 2>/dev/null || munged --force
  running slurmctld || slurmctld
  running slurmd || slurmd
  for _ in $(seq 1 30); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then
      echo "local-slurm: cluster up (partition $PARTITION)"; sinfo; return 0
    fi
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "local-slurm: the node did not become idle; see /var/log/slurm/" >&2
  exit 4
}

stop() {
  need_root
  if [ ! -e "$MARKER" ] && [ "$FORCE" != --force ]; then
    echo "local-slurm: no cluster started by this script; nothing to stop"; return 0
  fi
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x munged || true
  rm -f "$MARKER"
  echo "local-slurm: stopped"
}

status() {
  if command -v sinfo >/dev/null && sinfo -h >/dev/null 2>&1; then sinfo; else echo "local-slurm: no SLURM reachable"; exit 1; fi
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [--force]" >&2; exit 2 ;;
esac
