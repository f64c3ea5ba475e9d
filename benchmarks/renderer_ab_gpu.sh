#!/usr/bin/env bash
# A renderer candidate against a baseline renderer, side by side in one run on one GPU
# (BENCHMARKS sim-to-real item 11). The candidate is this tree's deepgal; the baseline is
# another tree's deepgal package in $BASE, made beforehand (the GPU machine has no git):
#
#   mkdir -p /tmp/base && git archive HEAD deepgal | tar -x -C /tmp/base
#   BASE=/tmp/base REAL=../shared/data/galaxy10_decals_sample50.h5 FOREIGN=/tmp/foreign \
#     bash benchmarks/renderer_ab_gpu.sh          # logs into $OUT or ./ab-results
#   # REAL=Galaxy10_DECals.h5 REAL_ARGS="--real-per-class 100 --real-half judge --exclude ..."
#   # judges on the full file's judge half instead of the 50 shared images (sim_to_real.py)
#
# Both renderers get the same arms, each its own process, 3 seeds, 64 px images: smallnet and
# customnet with the pipeline's recipe and resnet18 at 64 px (30 epochs) on 100 galaxies per
# class (the default file's size), and resnet18 on $PER_CLASS (2000) per class. Every process
# runs this tree's benchmarks/sim_to_real.py; only the deepgal it imports differs.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${OUT:-ab-results}" && cd "${OUT:-ab-results}" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
base=$(cd "${BASE:?BASE: a folder holding the baseline deepgal package}" && pwd)
real=${REAL:-$repo/../shared/data/galaxy10_decals_sample50.h5}
device=${DEVICE:-cuda} seeds=${SEEDS:-"0 1 2"} big=${PER_CLASS:-2000} epochs=${EPOCHS:-30}
extra=()
for f in "${FOREIGN:-/nonexistent}"/*.npz; do [ -f "$f" ] && extra+=("$f"); done
params=$(mktemp -d)/params.yaml

"$py" "$repo/benchmarks/gpu_params.py" "$repo/params.yaml" "$params" "$epochs"

arm() {  # tree name, its path, per-class, variants...
  local name=$1 path=$2 n=$3; shift 3
  local tag="$*"
  PYTHONPATH=$path timeout "${ARM_S:-480}" "$py" "$repo/benchmarks/sim_to_real.py" \
    --params "$params" --device "$device" --threads 2 --real "$real" ${REAL_ARGS:-} --variants "$@" \
    --per-class "$n" --seeds $seeds ${extra[@]:+--extra-val "${extra[@]}"} \
    >"$out/${name}_${n}_${tag// /-}.log" 2>&1
  echo "$name $n $* exit $? after ${SECONDS}s"
}
SECONDS=0
for tree in "today:$base" "candidate:$repo"; do
  name=${tree%%:*} path=${tree#*:}
  arm "$name" "$path" 100 smallnet customnet &
  arm "$name" "$path" 100 resnet18_64 &
  arm "$name" "$path" "$big" resnet18_64 &
done
wait
for f in "$out"/*.log; do
  echo "== $(basename "$f")"
  grep -E "real acc|^\| [a-z]|another renderer|^\| [0-9] " "$f"
done
