#!/usr/bin/env bash
# Runs one starjax command on every worker of a Cloud TPU VM or pod slice: optionally creates
# it, installs this checkout (git HEAD) on all workers, runs the command on all of them at once
# with runtime.distributed.mode=auto (JAX finds the other workers itself), streams the output,
# and optionally deletes the TPU at the end. Ctrl-C stops the command on every worker.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: scripts/launch_tpu_vm.sh -t NAME -z ZONE [options] -- COMMAND CONFIG [key=value ...]

  -t NAME      TPU VM / pod slice name
  -z ZONE      its zone, e.g. us-central2-b
  -p PROJECT   Google Cloud project (default: gcloud's)
  -c           create the TPU first (needs -a); otherwise an existing one is reused
  -a TYPE      accelerator type for -c, e.g. v4-8, v5litepod-16
  -V VERSION   TPU software version for -c (default tpu-ubuntu2204-base)
  -S           skip the install step (the workers already have this version)
  -D           delete the TPU when the command ends
  -l LOGDIR    where the streamed log is kept (default runs/launch-logs)
  -n           dry run: print the gcloud commands and exit
  -h           this help

Example: scripts/launch_tpu_vm.sh -t star -z us-central2-b -c -a v4-16 -- star configs/gsm8k_qwen2.5_1.5b.yaml
The workers need the checkpoint and data at the config's paths, and one run_dir they all see
(e.g. a GCS FUSE or Filestore mount). After a preemption, rerun the same line: the run resumes.
EOF
}

die() { echo "launch_tpu_vm.sh: error: $*" >&2; exit 2; }

name="" zone="" project="" create=0 accel="" version="tpu-ubuntu2204-base" install=1 delete=0 logdir="runs/launch-logs" dry=0
while getopts ":t:z:p:ca:V:SDl:nh" opt; do
  case "$opt" in
    t) name="$OPTARG" ;;
    z) zone="$OPTARG" ;;
    p) project="$OPTARG" ;;
    c) create=1 ;;
    a) accel="$OPTARG" ;;
    V) version="$OPTARG" ;;
    S) install=0 ;;
    D) delete=1 ;;
    l) logdir="$OPTARG" ;;
    n) dry=1 ;;
    h) usage; exit 0 ;;
    :) die "-$OPTARG needs a value (see -h)" ;;
    *) die "unknown option -$OPTARG (see -h)" ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ -n "$name" ] || die "give the TPU name with -t (see -h)"
[ -n "$zone" ] || die "give the zone with -z (see -h)"
[ "$create" = 0 ] || [ -n "$accel" ] || die "-c needs the accelerator type: -a v4-8 (or another)"
[ $# -ge 2 ] || die "give the starjax command and its config after --, e.g. -- star configs/x.yaml"
case "$1" in star|sft|info|sample|diagnose|export-hf|import-hf) ;; *) die "unknown starjax command '$1'" ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
# import-hf's first argument is a Hugging Face directory (on the workers), not a config
[ "$1" = import-hf ] || [ -f "$2" ] || [ -f "$root/$2" ] || die "config file '$2' not found"
[ "$dry" = 1 ] || command -v gcloud >/dev/null || die "gcloud not found; install the Google Cloud SDK (or use -n)"

tpu=(gcloud compute tpus tpu-vm)
where=(--zone "$zone"); [ -n "$project" ] && where+=(--project "$project")
run() { if [ "$dry" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi; }
on_all() { run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "$1"; }

if [ "$create" = 1 ]; then
  run "${tpu[@]}" create "$name" "${where[@]}" --accelerator-type "$accel" --version "$version" || die "could not create $name"
fi
if [ "$install" = 1 ]; then
  archive="/tmp/starjax-$$.tgz"
  if [ "$dry" = 1 ]; then echo "git -C $root archive --format=tar.gz -o $archive HEAD"
  else git -C "$root" archive --format=tar.gz -o "$archive" HEAD || die "git archive failed (is this a git checkout?)"; fi
  run "${tpu[@]}" scp "$archive" "$name:starjax.tgz" "${where[@]}" --worker=all || die "copying starjax to $name failed"
  # uv brings its own Python 3.12 where the TPU image has an older one.
  on_all "set -e; mkdir -p ~/starjax && tar xzf ~/starjax.tgz -C ~/starjax && cd ~/starjax \
&& export PATH=\$HOME/.local/bin:\$PATH && (command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh) \
&& uv venv -q --allow-existing --python 3.12 .venv && uv pip install -q --python .venv/bin/python -e '.[tpu]'" \
    || die "installing starjax on $name failed"
fi

cmd="cd ~/starjax && .venv/bin/starjax $(printf '%q ' "$@") runtime.distributed.mode=auto"
trap 'echo "launch_tpu_vm.sh: stopping the command on every worker" >&2; on_all "pkill -f \"starjax \" || true"; exit 130' INT TERM
mkdir -p "$logdir" || die "cannot create $logdir"
if [ "$dry" = 1 ]; then on_all "$cmd"; status=0
else on_all "$cmd" 2>&1 | tee "$logdir/$name.log"; status=${PIPESTATUS[0]}; fi
[ "$status" = 0 ] || echo "launch_tpu_vm.sh: the command failed on a worker (exit $status); log: $logdir/$name.log" >&2
if [ "$delete" = 1 ]; then
  run "${tpu[@]}" delete "$name" "${where[@]}" --quiet
fi
exit "$status"
