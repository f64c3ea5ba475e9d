"""One frozen dataclass per ``params.yaml`` section, with its bounds.

No field carries a pipeline default (``params.yaml`` holds them all; see :mod:`.loader`).
Fields whose dataclass default is ``None`` mean "not used" (a reduction method not listed,
``data.local_path`` absent), not a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal

from .cv import CvCfg
from .loader import Checked

_HEX = set("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class BaseCfg(Checked):
    seed: int
    deterministic: bool
    device: Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class SyntheticCfg(Checked):
    image_size: int
    per_class: int
    balance: Literal["equal", "real"]

    def check(self):
        yield "image_size", self.image_size >= 16, "must be >= 16 px"
        yield "per_class", self.per_class >= 1, "must be >= 1"


@dataclass(frozen=True)
class DataCfg(Checked):
    source: Literal["synthetic", "galaxy10_decals", "labelled"]
    url: str
    sha256: str
    timeout_s: float
    retries: int
    local_path: str | None  # a copy of the real file already on disk: used instead of `url`
    path: str  # source labelled: a Galaxy10-layout HDF5 file or a folder of class folders
    path_sha256: str | None  # source labelled: optional digest of data.path (labelled.json's)
    image_size: int | None  # source labelled: every image resized to this; null keeps
    synthetic: SyntheticCfg

    def check(self):
        yield "url", self.url.startswith(("http://", "https://")), "must be an http(s) URL"
        yield (
            "sha256",
            len(self.sha256) == 64 and set(self.sha256) <= _HEX,
            "must be 64 hex characters",
        )
        yield "timeout_s", self.timeout_s > 0, "must be > 0 seconds"
        yield "retries", self.retries >= 0, "must be >= 0"
        yield (
            "local_path",
            self.local_path is None or self.local_path.strip() != "",
            "must be a file path or null",
        )
        yield "path", self.path.strip() != "", "must be a file or folder path"
        yield (
            "path_sha256",
            self.path_sha256 is None
            or (len(self.path_sha256) == 64 and set(self.path_sha256) <= _HEX),
            "must be 64 hex characters or null",
        )
        yield (
            "image_size",
            self.image_size is None or self.image_size >= 8,
            "must be >= 8 px or null",
        )


@dataclass(frozen=True)
class SplitCfg(Checked):
    train: float
    val: float
    test: float
    group_arcsec: float  # rows closer than this on the sky are one galaxy, kept in one split

    def check(self):
        for name in ("train", "val", "test"):
            v = getattr(self, name)
            yield name, 0.0 <= v <= 1.0, "must be a fraction in [0, 1]"
        yield "train", self.train > 0, "must be > 0: nothing to train on"
        yield "val", self.val > 0, "must be > 0: checkpoint selection needs a validation split"
        total = self.train + self.val + self.test
        yield "train", abs(total - 1.0) < 1e-6, f"train + val + test must sum to 1 (got {total:g})"
        yield (
            "group_arcsec",
            0.0 <= self.group_arcsec <= 3600.0,
            "must be in [0, 3600] arcseconds (0 groups only identical coordinates)",
        )


@dataclass(frozen=True)
class AugmentCfg(Checked):
    """Training augmentation, used as is by :mod:`deepgal.transforms` (its ``Augment``).

    ``rotate``: uniform angle in [0, 2 pi). ``flip``: horizontal and vertical, p = 0.5 each.
    ``jitter``: brightness, contrast and saturation factors uniform in [1 - jitter,
    1 + jitter] (1.0 allows a factor of 0: black, flat grey or greyscale, as torchvision's
    ColorJitter). ``scale``: zoom uniform in [1 - scale, 1 + scale] (1 would allow zoom 0).
    ``translate``: shift uniform in +- translate of the side, per axis.
    """

    rotate: bool
    flip: bool
    jitter: float
    scale: float
    translate: float

    def check(self):
        yield "jitter", 0.0 <= self.jitter <= 1.0, "must be in [0, 1]"
        yield "scale", 0.0 <= self.scale < 1.0, "must be in [0, 1)"
        yield "translate", 0.0 <= self.translate < 0.5, "must be in [0, 0.5)"


# Keys a variant may override; each one's bounds are TrainCfg's (checked once, there).
OVERRIDABLE = (
    "input_size",
    "crop",
    "pretrained",
    "epochs",
    "batch_size",
    "optimizer",
    "weight_decay",
    "label_smoothing",
    "ema",
    "mixup",
    "cutmix",
    "nproc",
    "epoch_images",
)


@dataclass(frozen=True)
class TrainCfg(Checked):
    """Shared by every variant; a variant overrides the keys in :data:`OVERRIDABLE`."""

    input_size: int
    crop: float
    pretrained: str  # none | imagenet | path/to/weights.pth
    optimizer: Literal["sgd", "adamw"]
    lr: float
    momentum: float
    weight_decay: float
    schedule: Literal["cosine", "constant", "step"]
    warmup_epochs: int
    epochs: int
    batch_size: int
    label_smoothing: float
    # Images per epoch: a fresh seeded random subset of the train split each epoch, so a big
    # variant can see a large split at a fixed cost; None = the whole split every epoch.
    epoch_images: int | None
    checkpoint_every: int
    compile: bool
    ema: float  # decay of an exponential moving average of the weights; 0 = off
    mixup: float  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix: float  # Beta(alpha, alpha) of cutmix; 0 = off
    precision: Literal["auto", "fp32", "bf16"]  # auto: bf16 on CUDA, fp32 on CPU
    channels_last: bool
    nproc: int  # DDP processes per node (torchrun); 1 = one plain process
    # Read the train/val splits a block at a time (deepgal.training.stream) instead of whole:
    # always | never | auto (CPU: past the buffer; CUDA: past a quarter of the RAM); not
    # on/off, which YAML reads as booleans.
    stream: Literal["auto", "always", "never"]
    stream_buffer_mb: int  # memory the streamed blocks of one split may hold
    augment: AugmentCfg

    def check(self):
        yield "input_size", 8 <= self.input_size <= 1024, "must be in [8, 1024] px"
        yield "crop", 0 < self.crop <= 1, "must be a fraction in (0, 1]"
        yield (
            "pretrained",
            self.pretrained.strip() != "",
            "must be none, imagenet or a weights file path",
        )
        yield "lr", 0 < self.lr < 10, "must be in (0, 10)"
        yield "momentum", 0 <= self.momentum < 1, "must be in [0, 1)"
        yield "weight_decay", self.weight_decay >= 0, "must be >= 0"
        yield "warmup_epochs", self.warmup_epochs >= 0, "must be >= 0"
        yield "epochs", self.epochs >= 1, "must be >= 1"
        yield "batch_size", self.batch_size >= 1, "must be >= 1"
        yield (
            "epoch_images",
            self.epoch_images is None or self.epoch_images >= 1,
            "must be null (the whole train split) or >= 1 images",
        )
        yield "label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"
        yield "checkpoint_every", self.checkpoint_every >= 1, "must be >= 1"
        yield "ema", 0 <= self.ema < 1, "must be in [0, 1) (0 = off; 0.999 is typical)"
        yield "mixup", 0 <= self.mixup <= 10, "must be in [0, 10] (0 = off; 0.2 is light)"
        yield "cutmix", 0 <= self.cutmix <= 10, "must be in [0, 10] (0 = off; 1.0 is usual)"
        yield "nproc", 1 <= self.nproc <= 1024, "must be in [1, 1024]"
        yield "stream_buffer_mb", self.stream_buffer_mb >= 16, "must be >= 16 (MB)"


@dataclass(frozen=True)
class SelectCfg(Checked):
    max_gap: float
    max_val_loss_rise: float
    register: bool
    log_model: Literal["learned", "always"]  # learned: only a checkpoint above chance

    def check(self):
        yield "max_gap", 0 <= self.max_gap <= 1, "must be in [0, 1]"
        yield "max_val_loss_rise", self.max_val_loss_rise >= 0, "must be >= 0"


@dataclass(frozen=True)
class EvaluateCfg(Checked):
    batch_size: int
    tta: bool  # average the softmax over the 8 rotation/flip views
    map_train: int | None  # train images embedded for the maps (a seeded sample); None = all
    outlier_k: int  # train neighbours the outlier score of a val/test image averages over
    outlier_ref: int | None  # train images the outlier score compares with (a seeded sample)

    def check(self):
        yield "batch_size", self.batch_size >= 1, "must be >= 1"
        yield "outlier_k", self.outlier_k >= 1, "must be >= 1 (train neighbours)"
        yield (
            "outlier_ref",
            self.outlier_ref is None or self.outlier_ref >= 1,
            "must be null (every train image) or >= 1 images",
        )
        yield (
            "map_train",
            self.map_train is None or self.map_train >= 1,
            "must be null (every train image) or >= 1 images",
        )


@dataclass(frozen=True)
class UmapCfg(Checked):
    n_neighbors: int
    min_dist: float
    metric: Literal["euclidean", "cosine", "manhattan", "correlation"]

    def check(self):
        yield "n_neighbors", 2 <= self.n_neighbors <= 200, "must be in [2, 200]"
        yield "min_dist", 0 <= self.min_dist <= 1, "must be in [0, 1]"


@dataclass(frozen=True)
class TsneCfg(Checked):
    perplexity: float

    def check(self):
        yield "perplexity", 1 <= self.perplexity <= 100, "must be in [1, 100]"


@dataclass(frozen=True)
class PcaCfg(Checked):
    pass


@dataclass(frozen=True)
class MethodsCfg(Checked, Mapping):
    """The reductions to run; an unlisted (or null) method is not run.

    A read-only mapping ``{method: {setting: value}}`` of the listed methods (what
    ``reduce.reduce_features`` takes); ``.umap`` etc. give the typed settings or None.
    """

    pca: PcaCfg | None = None
    tsne: TsneCfg | None = None
    umap: UmapCfg | None = None

    def _listed(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, name: str) -> dict:
        if name not in self._listed():
            raise KeyError(name)
        return asdict(getattr(self, name))

    def __iter__(self):
        return iter(self._listed())

    def __len__(self) -> int:
        return len(self._listed())


@dataclass(frozen=True)
class ReduceCfg(Checked):
    methods: MethodsCfg
    pca_dims: int | None  # PCA to this many dims before UMAP/t-SNE; null = never
    exact_max: int | None  # exact neighbour search up to this many train points; null = always
    fit_max: int | None  # maps fitted on a seeded sample of this many train points; null = all

    def check(self):
        yield "methods", len(self.methods) > 0, "list at least one of pca, tsne, umap"
        yield "pca_dims", self.pca_dims is None or self.pca_dims >= 2, "must be >= 2 or null"
        yield (
            "exact_max",
            self.exact_max is None or self.exact_max >= 0,
            "must be null (always exact) or >= 0 points (0: always approximate)",
        )
        yield "fit_max", self.fit_max is None or self.fit_max >= 5, "must be null or >= 5 points"


REDUCE_METHODS: dict[str, type] = {"pca": PcaCfg, "tsne": TsneCfg, "umap": UmapCfg}

SECTIONS: dict[str, type] = {
    "base": BaseCfg,
    "data": DataCfg,
    "split": SplitCfg,
    "train": TrainCfg,
    "select": SelectCfg,
    "evaluate": EvaluateCfg,
    "reduce": ReduceCfg,
    "cv": CvCfg,
}
