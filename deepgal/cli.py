"""The ``deepgal`` command: what the DAG does not cover.

    deepgal info FILE.h5                                    validate and summarise a file
    deepgal evaluate --checkpoint CKPT --data FILE.h5 [--tta] [--json]
                     [--per-class N --seed S --half judge --exclude SEEN.h5]
                                                             a held-out sample of FILE
    deepgal predict  --checkpoint CKPT --data FILE.h5|FOLDER --out preds.csv [--tta]
                     [--min-purity 0.9] [--uncalibrated]
    deepgal similar  --checkpoint CKPT --data FILE --query ROW|IMAGE.png [-k 12] --out DIR
    deepgal similar  --checkpoint CKPT --data FILE --outliers N --out DIR
                                                             look-alikes / the most unusual
    deepgal explain  --checkpoint CKPT --data FILE --rows 0 5 9 --out DIR
                                                             Grad-CAM maps of some rows
    deepgal ui [--port 5000]                                MLflow UI on 127.0.0.1, training view
    deepgal profile NAME                                    validate profiles/NAME.yaml, print -S args
    deepgal export   --checkpoint CKPT --onnx model.onnx [--image-size 256]
                                                            an ONNX graph, preprocessing inside

``args=$(deepgal profile real-gpu) && dvc exp run --temp -n real-gpu $args`` runs the pipeline
with a profile (a params.yaml overlay); a bad profile fails naming the file and key before DVC
runs (the ``&&`` matters: ``$(...)`` inside the dvc command would let DVC run the default).

A checkpoint carries its own preprocessing, so any Galaxy10-layout file of any image size works.
``predict`` also takes an HDF5 file with ``images`` only (no labels) and a folder of JPEG/PNG
cut-outs of any size (e.g. from the Legacy Surveys viewer); ``--tta`` averages the 8
rotation/flip views. Probabilities are calibrated with the temperature the select stage's
``models/<variant>/selected.pt`` carries (``--uncalibrated``: the raw softmax).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from . import export
from .data import galaxy10
from .errors import DeepgalError
from .metrics import binomial_se


def cmd_info(args) -> int:
    info = galaxy10.validate(args.file)
    if args.json:
        print(json.dumps(info.as_dict()))
        return 0
    print(
        f"{info.path}: {info.n_images} images of {info.height}x{info.width} px, "
        f"optional columns: {', '.join(info.optional_keys) or 'none'}"
    )
    for name, count in zip(galaxy10.CLASS_NAMES, info.class_counts, strict=True):
        print(f"  {count:6d}  {name}")
    return 0


def _model(args):
    from .inference import load_model
    from .utils import pick_device

    device = pick_device(args.device)
    return (*load_model(args.checkpoint, device), device)


def cmd_evaluate(args) -> int:
    """Score a checkpoint on a labelled file, or on a held-out sample of it (``--per-class``,
    ``--half``, ``--exclude``): accuracy with its binomial standard error, macro-F1 with a
    bootstrap interval, recall per class. The judge of transfer to real images."""
    from .score_on_set import judge_rows, score_checkpoint
    from .utils import pick_device

    # The rows first: a bad file or argument fails before a model is loaded.
    rows, held = judge_rows(args.data, args.per_class, args.seed, args.half, args.exclude or ())
    out = score_checkpoint(
        args.checkpoint,
        args.data,
        rows,
        pick_device(args.device),
        args.batch_size,
        args.tta,
        calibrated=not args.uncalibrated,
    )
    if not out["calibrated"] and not args.uncalibrated:
        _calibration(args, {})  # says on stderr that the checkpoint carries none
    if held is not None:
        out["sample"] = held
    if args.json:
        print(json.dumps(out))
        return 0
    what = f"{out['n']} images"
    if held is not None:
        got = held["per_class"]
        found = f"{min(got)}" if min(got) == max(got) else f"{min(got)}–{max(got)}"
        asked = (
            f"{args.per_class} per class asked, {found} found"
            if held["short"]
            else f"{args.per_class or 'all'} per class"
        )
        what += (
            f" ({asked}, seed {args.seed}"
            f"{', ' + args.half + ' half' if args.half else ''}; "
            f"{held['excluded']} near-duplicates of the excluded files skipped)"
        )
    lo, hi = out["macro_f1_ci95"]
    print(
        f"{args.data}: {what}\n  accuracy {out['accuracy']:.3f} ± {out['accuracy_se']:.3f} "
        f"(binomial s.e.), macro-F1 {out['macro_f1']:.3f} [95% bootstrap {lo:.3f}, {hi:.3f}] "
        f"({out['variant']}, epoch {out['epoch']})"
    )
    how = (
        f"calibrated, temperature {out['temperature']:.3f}" if out["calibrated"] else "uncalibrated"
    )
    print(f"  probabilities {how}: ECE {out['ece']:.3f} (15 bins), NLL {out['nll']:.3f}")
    for c, r in out["recall"].items():
        k = out["support"][c]
        print(f"  recall {r:6.3f} ± {binomial_se(r, k):.3f}  of {k:5d}  {c}")
    if held is not None and held["short"]:
        print(f"  fewer than {args.per_class} clean images in: {', '.join(held['short'])}")
    return 0


def cmd_predict(args) -> int:
    """One row per image: its name (file name, or row index of an HDF5 file), the predicted
    class (number and name), the label when the file has one, a probability per class
    (calibrated unless ``--uncalibrated``); with ``--min-purity`` whether it was kept."""
    from .inference.cutouts import open_cutouts, predict
    from .inference.purity import select_pure, summary
    from .utils import atomic_write_text

    if args.min_purity is not None and args.uncalibrated:
        raise ValueError(
            "--min-purity thresholds are on calibrated probabilities; drop --uncalibrated"
        )
    cut = open_cutouts(args.data)  # before loading a model: bad input fails first
    model, pre, ckpt, device = _model(args)
    cal = _calibration(args, ckpt)
    thresholds = cal.thresholds(args.min_purity) if args.min_purity is not None else None
    probs = predict(cut, model, pre, device, args.batch_size, args.tta)
    probs = cal.apply(probs) if cal else probs
    classes = tuple(ckpt.get("class_names", galaxy10.CLASS_NAMES))
    pred = probs.argmax(1)
    df = pd.DataFrame(
        {
            "file" if cut.kind == "folder" else "index": cut.names,
            "predicted": pred,
            "predicted_name": [classes[i] for i in pred],
        }
    )
    if cut.labels is not None:
        df["label"] = cut.labels
    df[[f"p_{c}" for c in classes]] = probs
    if thresholds is not None:
        df["kept"], df["purity_threshold"] = select_pure(probs, thresholds)
    atomic_write_text(args.out, df.to_csv(index=False, float_format="%.6f"))
    print(
        f"wrote {len(df)} predictions to {args.out}{' (8-view TTA)' if args.tta else ''}, "
        + (f"calibrated (temperature {cal.temperature:.3f})" if cal else "uncalibrated")
    )
    if thresholds is not None:
        print(
            f"--min-purity {args.min_purity}: {int(df['kept'].sum())} of {len(df)} kept "
            "(column 'kept'; 'purity_threshold' is the predicted class's threshold):"
        )
        print("\n".join(summary(thresholds, classes, pred, df["kept"].to_numpy(), args.min_purity)))
    return 0


def _calibration(args, ckpt: dict):
    """The checkpoint's Calibration, or None with ``--uncalibrated`` or when it has none
    (said on stderr; ``--min-purity`` then fails)."""
    from .calibration import Calibration

    cal = Calibration.from_checkpoint(ckpt, args.checkpoint)
    if cal is None and not args.uncalibrated:
        if getattr(args, "min_purity", None) is not None:
            raise ValueError(
                f"{args.checkpoint} carries no calibration, so no purity "
                "thresholds: use the select stage's models/<variant>/selected.pt"
            )
        print(
            f"note: {args.checkpoint} carries no calibration (a raw epoch checkpoint); "
            "probabilities are uncalibrated. The select stage's models/<variant>/selected.pt "
            "carries one",
            file=sys.stderr,
        )
    return None if args.uncalibrated else cal


def _add_explore(sub, fmt: dict) -> None:
    """The ``similar`` and ``explain`` subcommands (run by :mod:`deepgal.explore.commands`)."""
    from .explore.commands import cmd_explain, cmd_similar

    explore = {
        "checkpoint_help": "a checkpoint of the train stage, e.g. models/<variant>/selected.pt",
        "data_help": "an HDF5 file with 'images' ('ans' optional) or a folder of "
        ".jpg/.jpeg/.png cut-outs (rows: the files in name order)",
        "out_help": "folder for the PNG gallery and the CSV (each written whole)",
    }
    s = _add_model_command(
        sub,
        fmt,
        "similar",
        "the k nearest galaxies to one (--query) or the N most "
        "unusual (--outliers) in a checkpoint's embedding: PNG gallery + CSV",
        **explore,
    )
    s.set_defaults(func=cmd_similar)
    _add_similar_args(s)
    s = _add_model_command(
        sub, fmt, "explain", "Grad-CAM maps of some rows over the images: PNG gallery", **explore
    )
    s.set_defaults(func=cmd_explain)
    _add_explain_args(s)


def _add_model_command(
    sub, fmt: dict, name: str, help_: str, checkpoint_help: str, data_help: str, out_help=None
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with the options every command that runs a checkpoint over
    images has: ``--checkpoint``, ``--data``, ``--out`` (only when ``out_help`` is given) and
    ``--device``, in that order."""
    s = sub.add_parser(name, help=help_, **fmt)
    s.add_argument("--checkpoint", type=Path, required=True, help=checkpoint_help)
    s.add_argument("--data", type=Path, required=True, help=data_help)
    if out_help is not None:
        s.add_argument("--out", type=Path, required=True, help=out_help)
    s.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when present",
    )
    return s


def _add_explain_args(s: argparse.ArgumentParser) -> None:
    """``explain``'s own options: which rows, and how many images per pass."""
    s.add_argument(
        "--rows",
        type=int,
        nargs="+",
        required=True,
        help="row numbers of --data to explain, e.g. 0 5 9",
    )
    s.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="images per forward/backward pass (memory, not results)",
    )


def _add_similar_args(s: argparse.ArgumentParser) -> None:
    """``similar``'s own options: a query or outliers (one of them), the neighbour search,
    the embedding cache and the batch size."""
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--query", metavar="ROW|IMAGE", help="a row number of --data, or a JPEG/PNG of any size"
    )
    what.add_argument(
        "--outliers",
        type=int,
        metavar="N",
        help="the N images farthest from their nearest neighbours",
    )
    s.add_argument("-k", "--k", type=int, default=12, help="look-alikes to show")
    s.add_argument(
        "--neighbours",
        type=int,
        default=10,
        help="--outliers: the score is the mean cosine distance to this many nearest other images",
    )
    s.add_argument(
        "--tta",
        action="store_true",
        help="embeddings averaged over the 8 rotation/flip views: look-alikes "
        "whatever their orientation (8x the compute, cached apart)",
    )
    s.add_argument(
        "--index",
        default="auto",
        choices=["auto", "sklearn", "faiss"],
        help="nearest-neighbour backend (exact either way); auto: faiss on "
        "large searches when installed",
    )
    s.add_argument(
        "--cache",
        type=Path,
        help="folder of cached embeddings (default: "
        "$DEEPGAL_CACHE, else $XDG_CACHE_HOME/deepgal, else ~/.cache/deepgal)",
    )
    s.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="images per forward pass (memory, not results)",
    )


def cmd_ui(args) -> int:
    """Start a light MLflow server on the repo's store and print the training-view link."""
    from .tracking import default_tracking_uri

    uri = default_tracking_uri()
    # Quiet: the server's DeprecationWarnings (Starlette's, MLflow's to fix) and a log line per
    # request the UI makes say nothing to the user; the registry is named to skip the notice
    # that it defaults to the backend store.
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONWARNINGS": "ignore::DeprecationWarning,"
        "ignore:starlette.middleware.wsgi is deprecated",
    }
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
        "--uvicorn-opts",
        "--no-access-log",
    ]
    # Its own process group, stopped however `deepgal ui` ends (Ctrl-C, kill, a closed
    # terminal), so no server or uvicorn worker is left holding the port.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        return _serve(proc, uri, f"http://{args.host}:{args.port}")
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_group(proc)


def _serve(proc: subprocess.Popen, uri: str, base: str) -> int:
    from .tracking import EXPERIMENT_DEFAULT, redact

    exp_id = None
    for _ in range(60):  # the server takes a few seconds to start
        try:
            url = (
                f"{base}/api/2.0/mlflow/experiments/get-by-name?"
                f"experiment_name={EXPERIMENT_DEFAULT}"
            )
            with urllib.request.urlopen(url, timeout=2) as r:
                exp_id = json.load(r)["experiment"]["experiment_id"]
            break
        except urllib.error.HTTPError:
            break  # up, but no experiment yet
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None:
                print(f"error: mlflow server exited ({proc.returncode})", file=sys.stderr)
                return 1
            time.sleep(1)
    print(f"MLflow UI on {redact(uri)}:")
    print(
        f"  {base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
        if exp_id
        else f"  {base}  (no '{EXPERIMENT_DEFAULT}' runs yet: run `dvc repro` first)"
    )
    print(
        "Each pipeline run shows every variant's headline numbers; expand one (+) and open "
        "Chart view to compare its variants' accuracy curves. Ctrl-C stops."
    )
    return proc.wait()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of ``proc`` (started with a session of its own), then SIGKILL
    it if it has not gone within 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def cmd_profile(args) -> int:
    from . import profiles

    words = profiles.dvc_args(args.name, args.params)
    print(
        "\n".join(words[i] + " " + words[i + 1] for i in range(0, len(words), 2))
        if args.lines
        else " ".join(words)
    )
    return 0


class _Defaults(argparse.HelpFormatter):
    """Help that names an option's default where it has a real one (not None or False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The ``deepgal`` parser: one subcommand per job, each with its ``func`` default."""
    p = argparse.ArgumentParser(
        prog="deepgal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    fmt = {"formatter_class": _Defaults}
    _add_info(sub, fmt)
    _add_scoring(sub, fmt)
    _add_explore(sub, fmt)
    _add_ui(sub, fmt)
    _add_profile(sub, fmt)
    export.add_parser(sub, **fmt)
    return p


def _add_info(sub, fmt: dict) -> None:
    """The ``info`` subcommand: validate and summarise a Galaxy10-layout file."""
    s = sub.add_parser("info", help="validate and summarise a Galaxy10-layout file", **fmt)
    s.add_argument(
        "file",
        type=Path,
        help="HDF5 file with 'images' and 'ans' (e.g. data/galaxy10.h5 or Galaxy10_DECals.h5)",
    )
    s.add_argument("--json", action="store_true", help="print exactly one JSON object")
    s.set_defaults(func=cmd_info)


def _add_scoring(sub, fmt: dict) -> None:
    """The ``evaluate`` and ``predict`` subcommands: a checkpoint run over a file of images."""
    s = _add_scoring_common(
        sub,
        fmt,
        "evaluate",
        "score a checkpoint on a labelled file",
        "a labelled HDF5 file ('images', 'ans')",
    )
    _add_evaluate_args(s)
    s.set_defaults(func=cmd_evaluate)
    s = _add_scoring_common(
        sub,
        fmt,
        "predict",
        "per-image class probabilities to CSV, "
        "from an HDF5 file (labels optional) or a folder of JPEG/PNG",
        "an HDF5 file with 'images' ('ans' optional) or a folder of .jpg/.jpeg/.png cut-outs",
    )
    _add_predict_args(s)
    s.set_defaults(func=cmd_predict)


def _add_scoring_common(
    sub, fmt: dict, name: str, help_: str, data_help: str
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with the options ``evaluate`` and ``predict`` share: checkpoint,
    data (described by ``data_help``), device, batch size, TTA and calibration."""
    s = _add_model_command(
        sub,
        fmt,
        name,
        help_,
        "a checkpoint of the train stage, e.g. the one results/<variant>/selection.json names",
        data_help,
    )
    s.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="images per forward pass (memory, not results)",
    )
    s.add_argument(
        "--tta", action="store_true", help="average the 8 rotation/flip views (8x the compute)"
    )
    s.add_argument(
        "--uncalibrated",
        action="store_true",
        help="the model's raw softmax, without the temperature the checkpoint "
        "carries (same predicted classes)",
    )
    return s


def _add_evaluate_args(s: argparse.ArgumentParser) -> None:
    """``evaluate``'s own options: JSON output and which sample of the file to score."""
    s.add_argument("--json", action="store_true", help="print exactly one JSON object")
    s.add_argument(
        "--per-class", type=int, help="score a seeded sample of this many images per class"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of --per-class's sample")
    s.add_argument(
        "--half",
        choices=["tune", "judge"],
        help="only the first (tune) or second (judge) half of each class's "
        "seeded order: tune on one, judge on the other",
    )
    s.add_argument(
        "--exclude",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="skip images that duplicate one of these files' (e.g. the "
        "real images a renderer was tuned against)",
    )


def _add_predict_args(s: argparse.ArgumentParser) -> None:
    """``predict``'s own options: the CSV to write and the purity filter."""
    s.add_argument(
        "--out",
        type=Path,
        required=True,
        help="CSV to write (complete or not at all): index, predicted "
        "class, label if known, one probability per class",
    )
    s.add_argument(
        "--min-purity",
        type=float,
        metavar="P",
        help="per class, keep only galaxies above the probability "
        "threshold that gave >= P precision on the validation split "
        "(adds columns kept, purity_threshold), e.g. 0.9",
    )


def _add_ui(sub, fmt: dict) -> None:
    """The ``ui`` subcommand: an MLflow UI bound to loopback by default."""
    s = sub.add_parser("ui", help="MLflow UI for this repository's runs (127.0.0.1)", **fmt)
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; the server has no login, so keep it on loopback",
    )
    s.add_argument("--port", type=int, default=5000, help="port to listen on")
    s.set_defaults(func=cmd_ui)


def _add_profile(sub, fmt: dict) -> None:
    """The ``profile`` subcommand: a profile checked and printed as ``dvc exp run -S`` args."""
    s = sub.add_parser(
        "profile",
        help="validate profiles/NAME.yaml on params.yaml and print it "
        "as `dvc exp run -S` arguments",
        **fmt,
    )
    s.add_argument("name", help="a profile name (profiles/NAME.yaml) or a .yaml file")
    s.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="the params file the profile is applied to",
    )
    s.add_argument("--lines", action="store_true", help="one -S argument per line (to read)")
    s.set_defaults(func=cmd_profile)


def main(argv: list[str] | None = None) -> int:
    from .stage import setup_logging

    args = build_parser().parse_args(argv)
    # Progress milestones (deepgal.progress) are log lines when stderr is not a terminal.
    setup_logging()
    try:
        return args.func(args)
    except (DeepgalError, galaxy10.Galaxy10FormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `deepgal evaluate ... | head`: the reader has what it wanted. Point stdout at devnull
        # so that Python's exit flush cannot raise again, and exit as a piped Unix tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
