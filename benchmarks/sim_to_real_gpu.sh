#!/usr/bin/env bash
# Sim-to-real at a scale a CPU cannot afford (BENCHMARKS sim-to-real item 10): is the ~33 %
# real ceiling a limit of the renderer, or of small CPU models trained on 800 galaxies?
# Five arms in parallel processes sharing one GPU, 3 seeds each, today's renderer at 64 px:
#   A resnet18, 64 px input, 30 epochs, on 100 galaxies per class (the default file's size)
#   B the same on 2000 per class       C customnet at 64 px input, same recipe, 2000 per class
#   D smallnet and customnet with the pipeline's own recipes (params.yaml), 2000 per class
# Each is scored on the real images (--real, default the 50 shared) and on other renderers'
# galaxies (benchmarks/foreign_renderers.py npz files in $FOREIGN, if any).
#
#   REAL=../shared/data/galaxy10_decals_sample50.h5 FOREIGN=/tmp/foreign \
#     bash benchmarks/sim_to_real_gpu.sh          # results into $OUT or ./s2r-results
#   # judged on 100 unseen real images per class of the full file (s.e. ~1.5 points, not 7):
#   REAL=Galaxy10_DECals.h5 REAL_ARGS="--real-per-class 100 --real-half judge --exclude \
#     ../shared/data/galaxy10_decals_sample50.h5" bash benchmarks/sim_to_real_gpu.sh
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${OUT:-s2r-results}" && cd "${OUT:-s2r-results}" && pwd)
py=${PYTHON:-python3}
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
real=${REAL:-$repo/../shared/data/galaxy10_decals_sample50.h5}
device=${DEVICE:-cuda} seeds=${SEEDS:-"0 1 2"} big=${PER_CLASS:-2000} epochs=${EPOCHS:-30}
extra=()
for f in "${FOREIGN:-/nonexistent}"/*.npz; do [ -f "$f" ] && extra+=("$f"); done

"$py" "$repo/benchmarks/gpu_params.py" "$repo/params.yaml" "$out/params.yaml" "$epochs"

arm() {  # name, per-class, variant
  timeout "${ARM_S:-480}" "$py" "$repo/benchmarks/sim_to_real.py" --params "$out/params.yaml" \
    --device "$device" --threads 3 --real "$real" ${REAL_ARGS:-} --variants "$3" --per-class "$2" \
    --seeds $seeds --json "$out/$1.json" ${extra[@]:+--extra-val "${extra[@]}"} \
    >"$out/$1.log" 2>&1
  echo "$1 exit $? after ${SECONDS}s"
}
SECONDS=0
arm A_resnet18_100 100 resnet18_64 &
arm B_resnet18_${big} "$big" resnet18_64 &
arm C_customnet64_${big} "$big" customnet_64 &
arm D_smallnet_${big} "$big" smallnet &
arm D_customnet_${big} "$big" customnet &
wait
for f in "$out"/*.log; do echo "== $(basename "$f")"; grep -A14 "^| [a-z]" "$f" | grep -v "^| variant\|^|---"; done
