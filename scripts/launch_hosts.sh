#!/usr/bin/env bash
# Runs one starjax command as a multi-process job over a list of hosts, with plain ssh: no
# mpirun, no torchrun. Each process gets STARJAX_COORDINATOR / STARJAX_NUM_PROCESSES /
# STARJAX_PROCESS_ID (and STARJAX_LOCAL_DEVICE_IDS with --per-gpu) and runs with
# runtime.distributed.mode=auto. Logs: LOGDIR/process-N.log, process 0's also to the terminal.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: scripts/launch_hosts.sh -H HOST[,HOST...] [options] -- COMMAND CONFIG [key=value ...]

  -H HOSTS       comma-separated hosts; the first runs process 0 and the coordinator.
                 "local" runs on this machine without ssh (testing).
  -p PORT        coordinator port on the first host (default 12355)
  -g N           --per-gpu: N processes per host, one GPU each (default: one process per host)
  -d DIR         starjax checkout on every host, with .venv installed (default: this checkout's path)
  -l LOGDIR      where process logs go (default: runs/launch-logs)
  -n             dry run: print the command of every process and exit
  -h             this help

Example: scripts/launch_hosts.sh -H gpu1,gpu2 -g 8 -- star configs/gsm8k_qwen2.5_1.5b.yaml
Every host must see the same run_dir (a shared filesystem). Rerun the same line to resume.
EOF
}

die() { echo "launch_hosts.sh: error: $*" >&2; exit 2; }

hosts="" port=12355 per_gpu=0 dir="$(cd "$(dirname "$0")/.." && pwd)" logdir="runs/launch-logs" dry=0
while getopts ":H:p:g:d:l:nh" opt; do
  case "$opt" in
    H) hosts="$OPTARG" ;;
    p) port="$OPTARG" ;;
    g) per_gpu="$OPTARG" ;;
    d) dir="$OPTARG" ;;
    l) logdir="$OPTARG" ;;
    n) dry=1 ;;
    h) usage; exit 0 ;;
    :) die "-$OPTARG needs a value (see -h)" ;;
    *) die "unknown option -$OPTARG (see -h)" ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ -n "$hosts" ] || die "give the hosts with -H host1,host2 (see -h)"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "-p $port is not a port number"
[[ "$per_gpu" =~ ^[0-9]+$ ]] || die "-g $per_gpu is not a number of GPUs"
[ $# -ge 2 ] || die "give the starjax command and its config after --, e.g. -- star configs/x.yaml"
command="$1" config="$2"
case "$command" in star|sft|info|sample|diagnose|export-hf|import-hf) ;; *) die "unknown starjax command '$command'" ;; esac
# import-hf's first argument is a Hugging Face directory (on the hosts), not a config
[ "$command" = import-hf ] || [ -f "$config" ] || [ -f "$dir/$config" ] || die "config file '$config' not found"

IFS=, read -r -a host_list <<< "$hosts"
per_host=$(( per_gpu > 0 ? per_gpu : 1 ))
total=$(( ${#host_list[@]} * per_host ))
first="${host_list[0]}"; [ "$first" = "local" ] && first=127.0.0.1
coordinator="$first:$port"

quote() { printf '%q ' "$@"; }
mkdir -p "$logdir" || die "cannot create $logdir"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap 'cleanup; exit 130' INT TERM

id=0
for host in "${host_list[@]}"; do
  for ((local_id = 0; local_id < per_host; local_id++)); do
    vars="STARJAX_COORDINATOR=$coordinator STARJAX_NUM_PROCESSES=$total STARJAX_PROCESS_ID=$id"
    [ "$per_gpu" -gt 0 ] && vars="$vars STARJAX_LOCAL_DEVICE_IDS=$local_id"
    remote="cd $(quote "$dir") && env $vars .venv/bin/starjax $(quote "$@") runtime.distributed.mode=auto"
    if [ "$dry" = 1 ]; then
      echo "[$host] $remote"
    elif [ "$host" = "local" ]; then
      bash -c "$remote" > "$logdir/process-$id.log" 2>&1 &
      pids+=($!)
    else
      ssh -o BatchMode=yes "$host" "$remote" > "$logdir/process-$id.log" 2>&1 &
      pids+=($!)
    fi
    id=$((id + 1))
  done
done
[ "$dry" = 1 ] && exit 0

tail -n +1 -f "$logdir/process-0.log" &
tailer=$!
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$status" = 0 ] && echo "launch_hosts.sh: process $i exited with $rc (log: $logdir/process-$i.log)" >&2
    status=$rc
  fi
done
kill "$tailer" 2>/dev/null
exit "$status"
