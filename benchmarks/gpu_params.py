"""The params.yaml of the GPU sim-to-real runs (docs/experiments/sim-to-real.md, items 10 and 11):
the pipeline's own smallnet and customnet recipes, plus resnet18 and customnet at 64 px input
trained for EPOCHS epochs (batch 128, lr x 2), the arms a CPU cannot afford. Used by
sim_to_real_gpu.sh and renderer_ab_gpu.sh, which pick their arms with --variants.

    python benchmarks/gpu_params.py params.yaml out/params.yaml 30
"""

import sys

import yaml


def main() -> None:
    src, dst, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(src) as f:
        p = yaml.safe_load(f)
    big = {"input_size": 64, "epochs": epochs, "batch_size": 128, "lr_scale": 2.0}
    p["variants"] = {
        "resnet18_64": {"model": "resnet18", **big},
        "customnet_64": {"model": "customnet", **big},
        "smallnet": p["variants"]["smallnet"],
        "customnet": p["variants"]["customnet"],
    }
    with open(dst, "w") as f:
        yaml.safe_dump(p, f, sort_keys=False)


if __name__ == "__main__":
    main()
