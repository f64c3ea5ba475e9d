#!/usr/bin/env bash
# What a machine with a GPU checks, in one go, as one short script because GPU time
# is lent by the minute:
#   1. the CUDA tests (tests/test_gpu_path.py: resident split, CUDA RNG, the recipe compiled);
#   2. benchmarks/bench_gpu.py: ResNet-50 / ConvNeXt-Tiny img/s at 224 px, bf16, channels_last;
#   3. the real stage scripts (download -> split -> train -> select -> evaluate -> reduce) on
#      real-size synthetic galaxies (17,740 x 256 px) with the real-gpu profile (ImageNet
#      weights off: such a machine may be offline), MLflow off; per-stage seconds.
#
#   bash benchmarks/gpu_session.sh            # results into $OUT or ./gpu-results
#   SMOKE=1 bash benchmarks/gpu_session.sh    # a tiny CPU rehearsal of the same steps
#   # lent time too short for the whole recipe: a stated fraction of each variant's epochs,
#   # fewer variants, a smaller file, or one epoch count for all (step 3 prints what it ran)
#   EPOCH_FRACTION=0.1 VARIANTS="smallnet resnet50" PER_CLASS=300 EPOCHS=2 STAGE_S=600 bash ...
#
# Each step has its own time limit, so a slow step still leaves the others' results.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${OUT:-gpu-results}" && cd "${OUT:-gpu-results}" && pwd)
py=${PYTHON:-python3}
# step 3 runs in a temporary folder: a relative PYTHON (.venv/bin/python) is made absolute here
case $py in */*) py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py") ;; esac
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DEEPGAL_MLFLOW=off
smoke=${SMOKE:-0}
if [ "$smoke" = 1 ]; then
  bench=(--device cpu --steps 2 --batch 8 --size 64 --pool 64 --models resnet50)
  per_class=8 size=64 epochs=1 variants="smallnet resnet50" device=cpu stage_s=${STAGE_S:-150}
else
  bench=(--steps 20 --warmup 5)
  # 1,774 per class: the real set's 17,740 images; no EPOCHS: the profile's own epochs
  per_class=${PER_CLASS:-1774} size=256 epochs=${EPOCHS:-}
  variants=${VARIANTS:-"smallnet resnet50 convnext_tiny"} device=cuda stage_s=${STAGE_S:-1800}
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  "$py" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.cuda.is_available())"; nproc; } | tee "$out/machine.txt"

echo "== 1. CUDA tests"
(cd "$repo" && timeout "${TEST_S:-200}" "$py" -m pytest tests/test_gpu_path.py -q -rs \
   -p no:cacheprovider -m "not slow") 2>&1 | tee "$out/tests.log"

echo "== 2. throughput"
[ "${SKIP_BENCH:-0}" = 1 ] || (cd "$repo" && timeout "${BENCH_S:-240}" "$py" benchmarks/bench_gpu.py "${bench[@]}") 2>&1 \
  | tee "$out/bench_gpu.md"

echo "== 3. stages on real-size synthetic galaxies"
# The stages as dvc.yaml wires them (its cmd lines: no second copy here to drift from it), one
# `dvc repro --single-item` each so every stage has its own time limit, in a copy of the code
# with the profile applied: DVC without git, outputs not cached (--no-commit: the 3.5 GB file
# is not copied a second time).
work=$(mktemp -d)
(cd "$repo" && tar -cf - dvc.yaml params.yaml .dvcignore stages deepgal labelled finetune profiles) \
  | (cd "$work" && tar -xf -) || exit 1
cd "$work" || exit 1
export PATH=$(dirname "$py"):$PATH  # dvc.yaml's `python` is this interpreter
"$py" -m dvc init --no-scm -q || exit 1
"$py" - "$repo" "$per_class" "$size" "$epochs" "$device" "$variants" "${EPOCH_FRACTION:-1}" <<'PY'
import sys
import yaml
from deepgal import profiles
repo, per_class, size, epochs, device, variants, fraction = sys.argv[1:]
p = profiles.check("real-gpu", f"{repo}/params.yaml", repo)
p["base"]["device"] = device
p["data"].update(source="synthetic", synthetic={"image_size": int(size),
                 "per_class": int(per_class), "balance": "equal"})
p["train"]["checkpoint_every"] = 1
def n_epochs(v):  # EPOCHS for all, else the profile's epochs x EPOCH_FRACTION (at least 1)
    full = p["variants"][v].get("epochs", p["train"]["epochs"])
    return int(epochs) if epochs else max(1, round(full * float(fraction)))
p["variants"] = {v: {**p["variants"][v], "pretrained": "none", "epochs": n_epochs(v)}
                 for v in variants.split()}
print(f"{10 * int(per_class)} images of {size} px;",
      ", ".join(f"{v} {c['epochs']} epochs" for v, c in p["variants"].items()))
if device == "cpu":
    p["train"].update(compile=False, precision="fp32")
    for v in p["variants"].values():
        v["input_size"] = min(v.get("input_size", 64), 64)
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
run() {  # one stage, timed
  local t0=$SECONDS; echo "-- $1"
  timeout "$stage_s" "$py" -m dvc repro --single-item --no-commit "$1" \
    || echo "FAILED rc=$?: $1"
  echo "-- $1: $((SECONDS - t0)) s"
}
{
  for s in params labelled download split; do run "$s"; done
  for v in $variants; do
    run "train@$v"
    tail -n +1 "results/$v/history.csv"
    run "select@$v"
    run "evaluate@$v"
    cat "results/$v/metrics.json" 2>/dev/null | head -c 600; echo
    run "reduce@$v"
  done
} 2>&1 | tee "$out/stages.log"
rm -rf "$work"
