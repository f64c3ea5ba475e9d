"""The selected checkpoint as an MLflow model: Galaxy10 images in, classes out.

Why a pyfunc ``PythonModel`` around deepgal's own checkpoint rather than ``mlflow.pytorch``:
``mlflow.pytorch`` pickles the whole ``nn.Module`` (loading it needs ``torch.load`` with
``weights_only=False``, which runs arbitrary code from the file) and its pyfunc takes float
tensors that are already cropped, resized and normalised. Our checkpoint is a plain tensor dict
loaded with ``weights_only=True``, and it carries its preprocessing, so the wrapper takes what
users have, ``(N, H, W, 3)`` uint8 images of any size, and returns classes. It predicts through
:func:`deepgal.inference.run_model`, the one batched inference path; deepgal's source travels
inside the model (``code/deepgal``), so any Python with the listed requirements can load it.
The model is stored as code (:mod:`deepgal.mlflow_model_code`), not as a pickled object, so
loading it unpickles nothing.

Imported by the select stage only (outside ``deepgal.tracking``, so the stages that log
through that package do not depend on it): it loads ``mlflow.pyfunc``, and torch to predict.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

import mlflow.pyfunc
import numpy as np

from . import checkpoint as ckpt_io
from .tracking import RunLogger, TrackingError
from .tracking.store import first_line, store_lock

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = ("class", "class_name", "probability", "probabilities")
# Images per request. A JSON request of 256 Galaxy10 frames (256 x 256 px) is ~230 MB of text,
# which the server parses in memory before the model sees it; more belongs in several requests
# (or `deepgal predict`, which streams a file).
MAX_IMAGES = 256
EXPECTED = (
    f'Send {{"inputs": [...]}} with 1 to {MAX_IMAGES} square RGB cut-outs as an '
    "(N, H, W, 3) array of integers 0-255"
)
# What the wrapper imports when it predicts (deepgal's own code travels with the model).
# The file MLflow stores and runs to load the model (models from code). Named here, not
# imported: importing it would build a model at import time and make a circle of two modules;
# tests/deps.py reads this tuple, so the select stage's dvc.yaml deps include the file.
RUNS_FILES = ("mlflow_model_code.py",)
REQUIREMENTS = ("mlflow", "torch", "torchvision", "numpy", "pandas", "h5py", "scikit-learn")


class GalaxyClassifier(mlflow.pyfunc.PythonModel):
    """``predict(images)``: images (N, H, W, 3) uint8, square, 1 <= N <= :data:`MAX_IMAGES`
    -> DataFrame with ``class`` (int, 0-9), ``class_name``, ``probability`` (float, of that
    class) and ``probabilities`` (C floats, every class in ``class`` order), calibrated with the
    temperature the checkpoint carries, as ``deepgal predict`` does. ``params={"batch_size": n}``.

    A request it cannot answer raises ``MlflowException(INVALID_PARAMETER_VALUE)`` saying what
    was wrong: in Python that is the exception, under ``mlflow models serve`` a 400 whose JSON
    ``message`` says it, and the server goes on serving."""

    def load_context(self, context) -> None:
        import torch

        from .calibration import Calibration
        from .inference import load_model

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.pre, ckpt = load_model(context.artifacts["checkpoint"], self.device)
        from .data.galaxy10 import CLASS_NAMES

        self.class_names = list(ckpt.get("class_names") or CLASS_NAMES)
        self.calibration = Calibration.from_checkpoint(ckpt, context.artifacts["checkpoint"])

    # The ndarray hint tells MLflow the input is an array it cannot derive a schema from (the
    # explicit signature() describes it), rather than leaving it to warn that hints are missing.
    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None):
        import pandas as pd

        from .inference import run_model

        images = check_images(model_input)
        batch = int((params or {}).get("batch_size", 256))
        if batch < 1:
            raise _bad_request(f"params.batch_size must be >= 1, got {batch}")
        probs = run_model(self.model, images, self.pre, self.device, batch_size=batch)
        if self.calibration is not None:
            probs = self.calibration.apply(probs)
        pred = probs.argmax(1)
        return pd.DataFrame(
            {
                "class": pred.astype(np.int64),
                "class_name": [self.class_names[i] for i in pred],
                "probability": probs.max(1).astype(np.float32),
                "probabilities": list(probs.astype(np.float32)),
            }
        )


def _bad_request(message: str):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message + f". {EXPECTED}", error_code=INVALID_PARAMETER_VALUE)


def check_images(model_input: Any) -> np.ndarray:
    """``model_input`` as an (N, S, S, 3) uint8 array, or ``MlflowException`` (a 400 when
    served) naming what is wrong: not numbers, not (N, H, W, 3), not uint8, empty, more than
    :data:`MAX_IMAGES`, not square, an image of only 0s and 1s. The signature's
    (-1, -1, -1, 3) uint8 is checked by MLflow first, but the rest only here."""
    try:
        images = np.asarray(model_input)
    except ValueError as e:  # ragged nested lists
        raise _bad_request(f"the input is not an array of images ({e})") from None
    if images.dtype.kind not in "biuf":
        raise _bad_request(
            f"the input is not images: it holds {images.dtype} values, not pixel numbers"
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise _bad_request(
            f"got an array of shape {images.shape}, not a batch of RGB images (N, H, W, 3)"
        )
    if images.dtype != np.uint8:
        raise _bad_request(f"pixels must be uint8 (integers 0-255), got {images.dtype}")
    n, h, w = images.shape[:3]
    if n == 0:
        raise _bad_request("the batch is empty: send at least one image")
    if n > MAX_IMAGES:
        raise _bad_request(
            f"{n} images in one request, more than the limit of {MAX_IMAGES}: "
            "split it into several requests"
        )
    if h != w or h == 0:
        raise _bad_request(
            f"images must be square and non-empty, got {h}x{w} px (cut the centre square out first)"
        )
    # Served, JSON numbers are cast to the signature's uint8 before this runs, fractions
    # dropped: pixels scaled to 0-1 arrive as frames of 0s and 1s, which no sky image is.
    flat = np.flatnonzero(images.reshape(n, -1).max(1) <= 1)
    if len(flat):
        raise _bad_request(
            f"image {flat[0]} ({len(flat)} of {n} in all) has only pixel values "
            "0 and 1: a blank frame, or pixels scaled to 0-1 (JSON numbers are "
            "cast to uint8, fractions dropped); send the raw values 0-255"
        )
    return images


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
        outputs=Schema(
            [
                ColSpec("long", "class"),
                ColSpec("string", "class_name"),
                ColSpec("float", "probability"),
                ColSpec(Array("float"), "probabilities"),
            ]
        ),
        params=ParamSchema([ParamSpec("batch_size", "long", 256)]),
    )


def requirements() -> list[str]:
    """Pinned to what is installed here (torch's local tag like ``+cpu`` dropped)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


@contextlib.contextmanager
def _pins_from_this_environment():
    """Skip MLflow's check of the model's pip requirements against this environment.

    Why: before its first check MLflow maps every installed distribution's files to modules
    (``importlib.metadata.packages_distributions``, ~1.5 s here, once when logging and again
    when loading the model back to validate the input example), only to warn about a
    mismatch. :func:`requirements` pins exactly what is installed, so none can exist. Where
    MLflow keeps the function elsewhere (another version), nothing is patched and it runs."""
    import mlflow.pyfunc as pyfunc_mod
    import mlflow.utils.environment as env_mod

    name = "warn_dependency_requirement_mismatches"
    targets = [m for m in (env_mod, pyfunc_mod) if callable(getattr(m, name, None))]
    saved = [getattr(m, name) for m in targets]
    for m in targets:
        setattr(m, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for m, fn in zip(targets, saved, strict=True):
            setattr(m, name, fn)


@contextlib.contextmanager
def _tracking_uri(uri: str):
    """MLflow's model logging resolves the store through its global URI: point it at ours.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment
    (and ``None`` deletes it), so the variable is put back as it was afterwards."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # deepgal never sets MLflow's global URI otherwise
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


def log_checkpoint_model(
    run: RunLogger,
    checkpoint: str | Path,
    step: int,
    input_example: np.ndarray,
    registered_name: str | None = None,
    alias: str = "best",
) -> dict | None:
    """Log ``checkpoint`` as model ``model`` of ``run`` (at ``step``, the selected epoch), and
    with ``registered_name`` register it with ``alias``. ``input_example``: a few real images,
    (n, H, W, 3) uint8; MLflow stores them and checks the model predicts on them.

    Returns ``{"model_uri", "model_id"[, "name", "version", "alias"]}``, or None when the
    tracker could not be used (best-effort runs warn instead of raising)."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException
    from sqlalchemy.exc import SQLAlchemyError

    def log_it(store) -> dict:
        client = store.client
        # No progress bar when MLflow downloads the just-logged model back to check the input
        # example: one per variant in the stage's log, for a local copy of a few megabytes.
        no_bar = mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
        try:
            with (
                _tracking_uri(store.uri),
                store_lock(store.uri),
                _pins_from_this_environment(),
                no_bar,
                tempfile.TemporaryDirectory(prefix="deepgal-model-") as tmp,
            ):
                # The model carries the weights, not the optimizer state: half the bytes to
                # copy into the store and to load when MLflow checks the input example.
                weights = Path(tmp) / Path(checkpoint).name
                ckpt_io.save_for_inference(checkpoint, weights)
                model = _log_pyfunc(client, run.run_id, checkpoint, weights, step, input_example)
                out = {"model_uri": f"models:/{model.model_id}", "model_id": model.model_id}
                if registered_name:
                    out |= _register(client, registered_name, model.model_id, run.run_id, alias)
                return out
        except (MlflowException, RequestException, SQLAlchemyError, OSError) as e:
            raise TrackingError(f"{type(e).__name__}: {first_line(e)}") from None

    return run._do("the selected model", log_it)


def _log_pyfunc(
    client, run_id: str, checkpoint: str | Path, weights: Path, step: int, input_example
):
    """Create logged model ``model`` of run ``run_id`` (with the run's params, tagged with
    ``checkpoint``'s name) and log into it the pyfunc that serves ``weights`` at ``step``,
    with its signature, input example and pinned requirements. Returns the logged model."""
    from mlflow.models import Model

    model_code = Path(__file__).with_name(RUNS_FILES[0])
    src = client.get_run(run_id)
    model = client.create_logged_model(
        src.info.experiment_id,
        name="model",
        source_run_id=run_id,
        params=dict(src.data.params),
        model_type="galaxy10-classifier",
        tags={"deepgal.checkpoint": Path(checkpoint).name},
    )
    Model.log(
        artifact_path=None,
        name="model",
        flavor=mlflow.pyfunc,
        run_id=run_id,
        model_id=model.model_id,
        step=step,
        python_model=str(model_code),
        artifacts={"checkpoint": str(weights)},
        code_paths=[str(Path(__file__).resolve().parent)],
        signature=signature(),
        input_example=input_example,
        pip_requirements=requirements(),
    )
    return model


def _register(client, name: str, model_id: str, run_id: str, alias: str) -> dict:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # registered by an earlier run
    mv = client.create_model_version(name, f"models:/{model_id}", run_id=run_id, model_id=model_id)
    client.set_registered_model_alias(name, alias, mv.version)
    return {"name": name, "version": int(mv.version), "alias": alias}
