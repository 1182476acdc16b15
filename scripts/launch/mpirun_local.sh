#!/usr/bin/env bash
# Data parallel on one machine: N ranks of `hone train` under Open MPI's mpirun.
#   scripts/launch/mpirun_local.sh N CONFIG.yaml [hone train options...]
# On GPUs each rank takes the GPU of its local rank (N GPUs, NCCL sums the gradients); on
# CPUs each rank takes cores/N threads (train.threads, unless the config sets it). data.batch
# is the micro-batch of one rank: the global batch is data.batch x optim.accum x N.
set -euo pipefail
n=${1:?usage: mpirun_local.sh N CONFIG.yaml [options]}
cfg=${2:?usage: mpirun_local.sh N CONFIG.yaml [options]}
shift 2
cd "$(dirname "$0")/../.."
threads=$(( $(nproc) / n ))
[ "$threads" -ge 1 ] || threads=1
extra=()
# Open MPI refuses to run as root unless told twice (containers often run as root)
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
grep -q 'threads:' "$cfg" || extra+=(--set "train.threads=$threads")
# hone parallelises inside a rank with OpenMP: do not pin a rank to one core
exec mpirun -np "$n" --bind-to none -x OMP_NUM_THREADS="$threads" \
    build/hone train "$cfg" "${extra[@]}" "$@"
