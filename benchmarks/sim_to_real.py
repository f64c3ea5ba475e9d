"""Sim-to-real check of the embedded galaxies: train the pipeline's variants on synthetic images
only, score them on the 50 real Galaxy10 DECaLS images of ``../shared/data``.

For each variant and seed: render the default synthetic set (``--per-class`` per class, default
``data.synthetic.per_class``, at ``--image-size``, seed 1000 + seed), keep 80% for training as
the pipeline's split does, and train the registry's model from scratch with the pipeline's
recipe: the variant's resolved config (deepgal.config.resolve_variant: input size, crop,
epochs, images per epoch, lr x lr_scale, label smoothing, augmentation) and the optimiser and
warm-up + decay schedule the train stage builds from it (deepgal.training.recipe: SGD with
Nesterov momentum or AdamW, no weight decay on norms and biases). Not applied here: EMA,
mixup and CutMix (a warning says so when the config turns them on). Then:

* synthetic validation that never sees a real pixel: accuracy on 500 fresh synthetic images,
  overall and on the third with the harshest nuisances (noisiest, worst seeing, smallest);
* the real check: accuracy, macro-F1 and per-class recall on the 50 real images, with the
  binomial standard error (+-7 points at 50 images) and a bootstrap interval for macro-F1;
  averaged over seeds as mean +- spread (standard deviation).

The 50 real images are a final check: they are scored, never trained or tuned on. A judge
nobody tuned on: ``--real`` the full Galaxy10_DECals.h5, a seeded ``--real-per-class`` sample of
it, ``--exclude`` the 50 shared images (their near-duplicates are skipped; deepgal.data.heldout).

    python benchmarks/sim_to_real.py --variants smallnet customnet --seeds 0 1 2
    python benchmarks/sim_to_real.py --stats      # synthetic vs real image statistics only
    python benchmarks/sim_to_real.py --synthetic-only   # renderer development: no real image
    # ... scored on earlier renderers' galaxies too (benchmarks/foreign_renderers.py):
    python benchmarks/sim_to_real.py --synthetic-only --extra-val /tmp/foreign/*.npz
    # seeds in parallel processes, then one summary:
    python benchmarks/sim_to_real.py --variants customnet --seeds 0 --threads 1 --json c0.json
    python benchmarks/sim_to_real.py --combine c0.json c1.json c2.json
    # on a GPU; a --params file may add variants with a `model` key (e.g. resnet18 at 64 px):
    python benchmarks/sim_to_real.py --device cuda --per-class 2000 --params big.yaml ...
    bash benchmarks/sim_to_real_gpu.sh     # BENCHMARKS sim-to-real item 10, on one GPU
    # trained with RandConv augmentation (item 12; probability per batch):
    python benchmarks/sim_to_real.py --randconv 0.5 --seeds 0 1 2
    # luminance only, every image trained on and scored (item 13):
    python benchmarks/sim_to_real.py --grayscale --seeds 0 1 2
    # judged on 100 unseen real images per class (binomial s.e. ~1.5 points, not 7):
    python benchmarks/sim_to_real.py --real data/Galaxy10_DECals.h5 --real-per-class 100 \
        --real-half judge --exclude ../shared/data/galaxy10_decals_sample50.h5
    # ... and the image statistics of the other half, the only one to tune against:
    python benchmarks/sim_to_real.py --stats --real data/Galaxy10_DECals.h5 --real-half tune
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from deepgal.config import RunCfg, resolve_variant
from deepgal.data.galaxy10 import CLASS_NAMES, NUM_CLASSES, read_images, read_labels
from deepgal.data.heldout import held_out_rows
from deepgal.data.synthetic import render
from deepgal.data.synthetic.params import draw, galaxy_params
from deepgal.metrics import binomial_se, bootstrap_macro_f1, confusion_from_labels, score
from deepgal.models import build_model
from deepgal.training.recipe import make_optimizer, make_schedule
from deepgal.transforms import _LUMA, Augment, Preprocess, prepare_batch

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "galaxy10_decals_sample50.h5"


def load_real(
    path: Path,
    per_class: int | None,
    seed: int,
    exclude: list[Path],
    size: int,
    half: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The real judge: images (N, size, size, 3) uint8, resized as the pipeline's input, and
    labels (N,) int64. Every row of ``path``, or ``per_class`` per class drawn with ``seed``,
    minus near-duplicates of the ``exclude`` files (deepgal.data.heldout); read in chunks, so
    the full 17,736-image file never sits in memory at 256 px."""
    rows, info = held_out_rows(path, per_class, seed, exclude, half=half)
    if len(rows) == 0:
        raise SystemExit(
            f"{path}: no real image left after skipping {info['excluded']} duplicates of --exclude"
        )
    images = np.concatenate(
        [resize(read_images(path, rows[i : i + 512]), size) for i in range(0, len(rows), 512)]
    )
    print(
        f"real judge: {path}{', ' + half + ' half' if half else ''}, {len(rows)} images, "
        f"per class {info['per_class']}, "
        f"{info['excluded']} near-duplicates of {[str(p) for p in exclude]} skipped",
        flush=True,
    )
    return images, read_labels(path)[rows]


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8, antialiased (as the pipeline's input)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous().numpy()


def recipe(params: dict, variant: str) -> RunCfg:
    """What the train stage of ``variant`` runs with under ``params`` (a whole params.yaml)."""
    return resolve_variant(params, variant)


def optimiser_parts(model: torch.nn.Module, r: RunCfg, n_train: int):
    """The pipeline's optimiser and per-step schedule for ``model`` under ``r``, and the
    images per epoch (``epoch_images`` of ``n_train``, as the train stage samples them)."""
    if r.ema or r.mixup or r.cutmix:
        print(
            f"warning: {r.variant}: ema {r.ema}, mixup {r.mixup}, cutmix {r.cutmix} are not "
            "applied by this benchmark",
            flush=True,
        )
    opt = make_optimizer(model, r)
    n_epoch = min(n_train, r.epoch_images or n_train)
    return opt, make_schedule(opt, r, math.ceil(n_epoch / r.batch_size)), n_epoch


def predict(model, images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Class predictions (N,) for (N, H, W, 3) uint8 images (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 256):
            x = prepare_batch(
                torch.from_numpy(images[i : i + 256]).to(device), pre, channels_last=False
            )
            out.append(model(x).argmax(1).cpu().numpy())
    return np.concatenate(out)


def grayscale(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the same shape and dtype, each pixel its luminance
    Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, PIL's convert("L")) in all three channels,
    so the nets stay as they are but cannot see colour (item 13)."""
    y = images.astype(np.float32) @ np.array(_LUMA, np.float32)
    return np.repeat(np.rint(y).clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def rand_conv(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """RandConv (Xu, Liu, Wang & Niethammer 2021, ICLR, arXiv:2007.13003), its plain RC_img1-7
    form: with probability ``p`` the whole normalised batch goes through one freshly drawn
    random 3->3 convolution, kernel size uniform over {1, 3, 5, 7}, weights N(0, 1/(3 k^2))
    (Kaiming normal with gain 1, the reference code's default), no bias. It distorts local
    texture and colour while keeping shape (BENCHMARKS sim-to-real item 12)."""
    if p <= 0 or torch.rand(1, generator=gen, device=gen.device).item() >= p:
        return x
    k = (1, 3, 5, 7)[int(torch.randint(4, (1,), generator=gen, device=gen.device).item())]
    w = torch.randn(3, 3, k, k, generator=gen, device=gen.device) / math.sqrt(3 * k * k)
    return F.conv2d(x, w.to(x.dtype), padding=k // 2)


def train(
    variant: str,
    r: RunCfg,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    device: str = "cpu",
    randconv: float = 0.0,
):
    """Train ``variant`` from scratch with recipe ``r`` on ``device`` (the whole training set
    sits there, augmented per batch); returns (model, Preprocess). ``randconv``: the
    probability of :func:`rand_conv` per batch (0: off, and no random number drawn for it)."""
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.from_numpy(images).to(device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    flat = torch.from_numpy(images).float().div(255).reshape(-1, 3)
    pre = Preprocess(
        r.input_size, r.crop, tuple(flat.mean(0).tolist()), tuple(flat.std(0).tolist())
    )
    model = build_model(r.model, NUM_CLASSES, r.input_size).to(device)
    opt, sched, n_epoch = optimiser_parts(model, r, len(x))
    augment = Augment(**dataclasses.asdict(r.augment))
    for _ in range(r.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen, device=device)[:n_epoch]
        for i in range(0, n_epoch, r.batch_size):
            idx = perm[i : i + r.batch_size]
            xb = prepare_batch(x[idx], pre, augment, gen, channels_last=False)
            xb = rand_conv(xb, randconv, gen)
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=r.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model, pre


def harsh_third(seed: int, n: int, size: int, labels: np.ndarray) -> np.ndarray:
    """Mask (n,) of the third of synthetic images ``0..n-1`` of ``render(.., seed)`` with the
    harshest nuisances: rank-sum of sky noise, seeing (in units of the galaxy's size) and
    smallness (the image model's ``noise``, ``psf`` and ``size`` parameters)."""
    p = galaxy_params(draw(seed, np.arange(n), size).u, labels.astype(np.int64))
    ranks = sum(np.argsort(np.argsort(v)) for v in (p["noise"], p["psf"] / p["size"], -p["size"]))
    return ranks >= np.quantile(ranks, 2 / 3)


def scores(pred: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, macro-F1 (over the classes present, as deepgal.metrics.score) and per-class
    recall (10,) of predictions (N,) int against labels (N,) int."""
    s = score(y, np.eye(NUM_CLASSES)[pred])
    return {
        "acc": s["accuracy"],
        "f1": s["macro_f1"],
        "recall": np.array([s["per_class"][name]["recall"] for name in CLASS_NAMES]),
    }


def run_variant(variant: str, args, params: dict, real: tuple[np.ndarray, np.ndarray]) -> None:
    r = recipe(params, variant)
    see = grayscale if args.grayscale else (lambda images: images)  # what the nets are shown
    x_real = see(real[0])
    rows, dev = [], []
    for seed in args.seeds:
        t0 = time.time()
        images, labels = render(args.per_class, args.image_size, seed=1000 + seed)
        images = see(images)
        n_train = int(0.8 * len(labels))  # the pipeline's 0.8 train fraction
        model, pre = train(
            variant, r, images[:n_train], labels[:n_train], seed, args.device, args.randconv
        )
        val_x, val_y = render(50, args.image_size, seed=5000 + seed)
        val_x = see(val_x)
        val_pred = predict(model, val_x, pre)
        harsh = harsh_third(5000 + seed, len(val_y), args.image_size, val_y)
        syn = confusion_from_labels(val_y, val_pred, NUM_CLASSES)
        print(
            f"{variant} seed {seed}: synthetic val {np.mean(val_pred == val_y):.3f} (harsh "
            f"third {np.mean((val_pred == val_y)[harsh]):.3f}); confusion:\n{syn}",
            flush=True,
        )
        foreign = {}
        for path in args.extra_val or ():  # another renderer's images: no real pixel decides
            with np.load(path) as f:
                ex_x, ex_y = see(f["images"]), f["labels"]
            foreign[path.stem] = float(np.mean(predict(model, ex_x, pre) == ex_y))
            print(
                f"{variant} seed {seed}: accuracy on {path.name} {foreign[path.stem]:.3f}",
                flush=True,
            )
        if args.synthetic_only:  # development runs never look at the real images
            dev.append({"syn": float(np.mean(val_pred == val_y)), **foreign})
            continue
        pred = predict(model, x_real, pre)
        s = scores(pred, real[1])
        s["syn"], s["syn_harsh"] = np.mean(val_pred == val_y), np.mean((val_pred == val_y)[harsh])
        s["f1_ci"] = bootstrap_macro_f1(real[1], pred, NUM_CLASSES)
        s["foreign"] = foreign
        rows.append(s)
        conf = confusion_from_labels(real[1], pred, NUM_CLASSES)
        print(
            f"{variant} seed {seed}: real acc {s['acc']:.3f} +- "
            f"{binomial_se(s['acc'], len(pred)):.3f} (binomial s.e.), "
            f"macro-F1 {s['f1']:.3f} [95% bootstrap {s['f1_ci'][0]:.3f}, {s['f1_ci'][1]:.3f}]"
            f"  ({time.time() - t0:.0f} s)\nconfusion (rows = true):\n{conf}",
            flush=True,
        )
    if rows and args.json:  # one file per run, so seeds run in parallel processes combine
        args.json.write_text(
            json.dumps(
                {
                    "variant": variant,
                    "recipe": {**r.flat(), "randconv": args.randconv, "grayscale": args.grayscale},
                    "n_real": len(real[1]),
                    "rows": [{**row, "recall": row["recall"].tolist()} for row in rows],
                }
            )
        )
    if rows:
        summarise(variant, r.flat(), rows, len(real[1]), int(np.bincount(real[1]).min()))
    if dev:  # synthetic-only: synthetic val and the other renderers, mean +- spread over seeds
        cells = []
        for key in dev[0]:
            v = 100 * np.array([d[key] for d in dev])
            cells.append(f"{key} {v.mean():.1f} ± {v.std():.1f}")
        print(f"\n{variant}, {len(dev)} seeds, no real image: " + ", ".join(cells))


def summarise(
    variant: str, r: dict, rows: list[dict], n_real: int, per_class: int | None = None
) -> None:
    """Mean +- spread over seeds, as a markdown table row block."""

    def ms(key):
        v = np.array([row[key] for row in rows])
        return f"{100 * v.mean():.1f} ± {100 * v.std():.1f}"

    acc = np.mean([row["acc"] for row in rows])
    recall = np.array([row["recall"] for row in rows])  # (seeds, classes)
    print(f"\n{variant}: {len(rows)} seeds")
    print(
        f"\n| {variant} ({r['input_size']} px, crop {r['crop']}, {r['epochs']} epochs) | "
        f"{ms('syn')} | {ms('syn_harsh')} | {ms('acc')} (binomial s.e. "
        f"{100 * binomial_se(acc, n_real):.0f}) | "
        f"{np.mean([row['f1'] for row in rows]):.3f} ± {np.std([row['f1'] for row in rows]):.3f} |"
    )
    per_class = per_class or n_real // NUM_CLASSES
    print(
        f"per-class recall on the real images, mean ± spread over seeds (~{per_class} images "
        f"per class: one image is {100 / max(per_class, 1):.0f} points):"
    )
    for c, name in enumerate(CLASS_NAMES):
        print(f"| {c} {name} | {100 * recall[:, c].mean():.0f} ± {100 * recall[:, c].std():.0f} |")
    for name in rows[0].get("foreign", {}):
        v = np.array([row["foreign"][name] for row in rows])
        print(f"accuracy on {name} (another renderer): {100 * v.mean():.1f} ± {100 * v.std():.1f}")


def image_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics of (N, S, S, 3) uint8: sky level and noise (border), colour
    (R-B)/(R+B) and concentration r80/r20 of the light above the sky, half-light radius
    (fraction of the side) and the log-log slope of the radial power spectrum."""
    x = images.astype(np.float64)
    n, s = x.shape[:2]
    w = max(2, s // 16)
    border = np.concatenate([x[:, :w].reshape(n, -1, 3), x[:, -w:].reshape(n, -1, 3)], 1)
    sky = np.median(border, 1)  # (N, 3)
    lum = x.mean(-1) - sky.mean(1)[:, None, None]
    noise = 1.4826 * np.median(np.abs(border.mean(-1) - np.median(border.mean(-1), 1)[:, None]), 1)
    yy, xx = np.mgrid[:s, :s] - (s - 1) / 2
    rad = np.hypot(yy, xx) / s
    inner = rad < 0.35
    light = np.clip(lum, 0, None) * inner * (lum > 3 * noise[:, None, None])
    order = np.argsort(rad.ravel())
    cum = np.cumsum(light.reshape(n, -1)[:, order], 1)
    cum /= cum[:, -1:] + 1e-9
    rs = rad.ravel()[order]
    r20, r50, r80 = (rs[np.argmax(cum >= q, 1)] for q in (0.2, 0.5, 0.8))
    sub = np.clip(x - sky[:, None, None], 0, None) * (light > 0)[..., None]
    red, blue = sub[..., 0].sum((1, 2)), sub[..., 2].sum((1, 2))
    power = (
        np.abs(
            np.fft.fftshift(np.fft.fft2(x.mean(-1) - x.mean((1, 2, 3))[:, None, None]), axes=(1, 2))
        )
        ** 2
    )
    k = np.hypot(yy, xx).round().astype(int)
    bins = np.arange(2, s // 2)
    prof = np.stack([power[:, k == b].mean(1) for b in bins], 1)
    slope = np.polyfit(np.log(bins), np.log(prof.T + 1e-9), 1)[0]
    return {
        "sky": sky.mean(1),
        "sky_noise": noise,
        "colour": (red - blue) / (red + blue + 1e-9),
        "concentration": r80 / np.maximum(r20, 1e-3),
        "r50": r50,
        "ps_slope": slope,
    }


def print_stats(real_x: np.ndarray, size: int) -> None:
    syn_x, _ = render(30, size, seed=123)
    real_s, syn_s = image_stats(real_x), image_stats(syn_x)
    print(f"image statistics at {size} px: median [10th, 90th percentile]")
    print(f"| statistic | synthetic ({len(syn_x)}) | real ({len(real_x)}) |\n|---|---|---|")
    for key in real_s:

        def cell(v):
            return f"{np.median(v):.3g} [{np.percentile(v, 10):.3g}, {np.percentile(v, 90):.3g}]"

        print(f"| {key} | {cell(syn_s[key])} | {cell(real_s[key])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=["smallnet", "customnet"])
    ap.add_argument(
        "--per-class",
        type=int,
        help="images per class to render (default: data.synthetic.per_class)",
    )
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="train and score here (cuda: the training set sits in GPU memory)",
    )
    ap.add_argument(
        "--randconv",
        type=float,
        default=0.0,
        help="train with RandConv at this probability per batch (item 12; 0: off)",
    )
    ap.add_argument(
        "--grayscale",
        action="store_true",
        help="show the nets luminance only, in training and scoring (item 13)",
    )
    ap.add_argument("--stats", action="store_true", help="print image statistics and stop")
    ap.add_argument("--json", type=Path, help="also write the per-seed scores here")
    ap.add_argument(
        "--extra-val",
        type=Path,
        nargs="+",
        help="npz files of images/labels from other renderer versions to score too "
        "(benchmarks/foreign_renderers.py makes them)",
    )
    ap.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        help="summarise --json files of one variant (seeds run apart) and stop",
    )
    ap.add_argument(
        "--synthetic-only",
        action="store_true",
        help="report the synthetic validation only (for choosing renderer versions)",
    )
    ap.add_argument(
        "--real",
        type=Path,
        default=REAL,
        help="labelled Galaxy10 file to judge on (default: the 50 shared images); "
        "the full Galaxy10_DECals.h5 with --real-per-class and --exclude is a "
        "judge nobody tuned on",
    )
    ap.add_argument(
        "--real-per-class",
        type=int,
        help="a seeded sample of this many real images per class (default: all)",
    )
    ap.add_argument("--real-seed", type=int, default=0)
    ap.add_argument(
        "--real-half",
        choices=["tune", "judge"],
        help="first (tune) or second (judge) half of each class's seeded order: "
        "look at --stats of the tune half, score on the judge half",
    )
    ap.add_argument(
        "--exclude",
        type=Path,
        nargs="+",
        default=[],
        help="skip real images that duplicate these files' (e.g. the 50 shared)",
    )
    args = ap.parse_args()
    if not (args.combine or args.synthetic_only or args.real.exists()):
        raise SystemExit(
            f"{args.real}: no such file; the 50-image sample lives in "
            "../shared/data, the full file is data.url in params.yaml"
        )
    torch.set_num_threads(args.threads)
    if args.combine:
        runs = [json.loads(p.read_text()) for p in args.combine]
        rows = [{**row, "recall": np.array(row["recall"])} for run in runs for row in run["rows"]]
        summarise(runs[0]["variant"], runs[0]["recipe"], rows, runs[0]["n_real"])
        return
    if args.stats:
        print_stats(
            load_real(
                args.real,
                args.real_per_class,
                args.real_seed,
                args.exclude,
                args.image_size,
                args.real_half,
            )[0],
            args.image_size,
        )
        return
    params = yaml.safe_load(args.params.read_text())
    if args.per_class is None:
        args.per_class = params["data"]["synthetic"]["per_class"]
    real = (np.zeros((0, args.image_size, args.image_size, 3), np.uint8), np.zeros(0, np.int64))
    if not args.synthetic_only:  # development runs never even load the real images
        real = load_real(
            args.real,
            args.real_per_class,
            args.real_seed,
            args.exclude,
            args.image_size,
            args.real_half,
        )
    print(
        f"| variant | synthetic val acc % | harsh-nuisance third % | real acc % "
        f"({len(real[1])} images) | real macro-F1 |\n|---|---:|---:|---:|---:|"
    )
    for variant in args.variants:
        run_variant(variant, args, params, real)


if __name__ == "__main__":
    main()
