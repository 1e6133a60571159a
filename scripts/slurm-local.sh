#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying `vidflow slurm` and for its test:
#
#   scripts/slurm-local.sh start DIR   writes DIR/slurm.conf (this machine's CPUs and memory, every
#                                      state, spool, pid and log path under DIR), starts munged,
#                                      slurmctld and slurmd in the foreground of their own sessions,
#                                      and waits until the node accepts jobs; prints the
#                                      SLURM_CONF to export.
#   scripts/slurm-local.sh stop DIR    ends the daemons it started (by their recorded pids).
#
# Needs Debian's slurm-wlm and munge (scripts/setup.sh installs them) and root (slurmd runs jobs as
# their submitting user; munged runs as the munge user). No systemd is involved.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

stop() {
  for d in slurmd slurmctld munged; do
    if [ -f "$dir/$d.pid" ]; then
      pid=$(cat "$dir/$d.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$d.pid"
    fi
  done
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "$0: unknown command '$cmd' (expected start or stop)" >&2; exit 2 ;;
esac

for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "$0: must run as root" >&2; exit 3; }

host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/log" "$dir/munge"
# munged (the munge user) must reach its socket: DIR and DIR/munge traversable by all.
chmod 711 "$dir"
chown munge:munge "$dir/munge"
chmod 711 "$dir/munge"
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi

cat > "$dir/slurm.conf" <<CONF
ClusterName=vidflow-local
SlurmctldHost=$host
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.slurm.pid
SlurmdPidFile=$dir/slurmd.slurm.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$((6817 + 0))
SlurmdPort=$((6818 + 0))
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$dir/slurm.conf"
stop
# munged: its own socket, pid and log under DIR (another munged may already serve the system).
setsid runuser -u munge -- munged --foreground --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
  --seed-file="$dir/munge/munged.seed" </dev/null >"$dir/log/munged.out" 2>&1 &
echo $! > "$dir/munged.pid"
for _ in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$dir/munge/munge.socket" ] || { echo "$0: munged did not start (see $dir/log/munged.out)" >&2; stop; exit 4; }
echo "AuthInfo=socket=$dir/munge/munge.socket" >> "$dir/slurm.conf"

setsid slurmctld -D -i -f "$SLURM_CONF" </dev/null >"$dir/log/slurmctld.out" 2>&1 &
echo $! > "$dir/slurmctld.pid"
setsid slurmd -D -f "$SLURM_CONF" </dev/null >"$dir/log/slurmd.out" 2>&1 &
echo $! > "$dir/slurmd.pid"

for _ in $(seq 150); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "$0: the node did not come up; logs in $dir/log" >&2
sinfo >&2 || true
stop
exit 4
