"""What the CUDA recipe does, exercised on the CPU: bf16 autocast, channels_last, torch.compile,
an EMA of the weights, mixup/CutMix, RNG state round trips, and the GPU-resident train split.

The tests marked ``needs_cuda`` are skipped without a GPU; the code paths they cover exist on
every box.
"""

from __future__ import annotations

import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.inference import run_model
from deepgal.models import build_model
from deepgal.training import Split, fit, place_split, recipe, rng
from deepgal.training.loop import fits_on_device
from deepgal.transforms import Preprocess
from deepgal.utils import machine, machine_label, seed_everything
from tests.helpers import DEVICE, data, run_cfg, spec, train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def first_conv_record(model):
    """Forward hook on smallnet's first conv recording input layout and output dtype."""
    seen = []

    def hook(module, inputs, output):
        if module.training:
            x = inputs[0]
            seen.append(
                (
                    x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                    output.dtype,
                )
            )

    model.body[0].register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("precision,channels_last", [("bf16", True), ("fp32", False)])
def test_precision_and_memory_format_reach_the_model(tmp_path, precision, channels_last):
    seed_everything(7, deterministic=True)
    model = build_model("smallnet", 10, 16)
    seen = first_conv_record(model)
    history = fit(
        model,
        data(),
        data(20, 1),
        spec(tmp_path, epochs=1, precision=precision, channels_last=channels_last),
        DEVICE,
    )
    want_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    assert seen and all(d == want_dtype for _, d in seen), seen[:2]
    assert all(layout == channels_last for layout, _ in seen), seen[:2]
    w = model.body[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.isfinite(torch.tensor(history[-1]["train/loss"]))


def test_auto_precision_is_fp32_on_cpu_bf16_on_cuda():
    auto = run_cfg(precision="auto")
    assert not recipe.use_bf16(auto, torch.device("cpu"))
    assert recipe.use_bf16(auto, torch.device("cuda"))
    assert recipe.use_bf16(run_cfg(precision="bf16"), torch.device("cpu"))


@pytest.mark.slow  # Inductor compiles C++ for the CPU: ~1 minute on 2 cores
@pytest.mark.skipif(not recipe.has_compiler(), reason="no C++ compiler for torch.compile")
def test_compiled_training_matches_eager(tmp_path):
    eager, _ = train(tmp_path / "eager", epochs=1)
    compiled, _ = train(tmp_path / "compiled", epochs=1, compile=True)
    assert compiled[0]["val/accuracy"] == pytest.approx(eager[0]["val/accuracy"], abs=0.1)
    assert compiled[0]["train/loss"] == pytest.approx(eager[0]["train/loss"], rel=0.05)


def test_compile_without_a_compiler_trains_uncompiled(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++/c++/clang++ to be found
    monkeypatch.setenv("CXX", "")
    model = torch.nn.Linear(2, 2)
    assert recipe.maybe_compile(model, run_cfg(compile=True), DEVICE) is model
    assert "no C++ compiler" in caplog.text
    assert recipe.maybe_compile(model, run_cfg(compile=False), DEVICE) is model
    # The same through fit: one epoch trains, uncompiled, on this CPU.
    caplog.clear()
    history, _ = train(tmp_path / "run", epochs=1, compile=True)
    assert [m["epoch"] for m in history] == [1] and "training uncompiled" in caplog.text


# ---- EMA -------------------------------------------------------------------------------------


def test_ema_update_rule():
    """decay_t = min(decay, (1 + n) / (10 + n)); the first update copies; ints are copied."""
    net = torch.nn.BatchNorm1d(2)
    ema = recipe.make_ema(net, run_cfg(ema=0.5))
    assert recipe.make_ema(net, run_cfg(ema=0.0)) is None
    values = [1.0, 3.0, 7.0]
    want = None
    for i, v in enumerate(values):
        with torch.no_grad():
            net.weight.fill_(v)
        net.num_batches_tracked.fill_(i + 10)
        ema.update_parameters(net)
        if want is None:
            want = v  # n_averaged 0: a copy
        else:
            d = min(0.5, (1 + i) / (10 + i))  # n_averaged = i updates so far
            want = d * want + (1 - d) * v
        assert ema.module.weight[0].item() == pytest.approx(want)
        assert ema.module.num_batches_tracked.item() == i + 10


def test_ema_is_evaluated_checkpointed_and_resumed_exactly(tmp_path, monkeypatch):
    ref, ref_model = train(tmp_path / "ref", epochs=2, ema=0.9)
    ckpt = ckpt_io.load(tmp_path / "ref" / "epoch_002.pt")
    # "model" is the EMA (what select/evaluate/features use); "train_model" the raw weights.
    assert ckpt["ema_n_averaged"] == 2 * 6  # one update a step
    for k, v in ckpt["train_model"].items():
        assert torch.equal(v, ref_model.state_dict()[k]), k
    assert any(not torch.equal(ckpt["model"][k], ckpt["train_model"][k]) for k in ckpt["model"])
    # The history's val numbers are the EMA weights' numbers.
    ema_net = build_model("smallnet", 10, 16)
    ema_net.load_state_dict(ckpt["model"])
    val = data(20, seed=1)
    logits = run_model(
        ema_net, val.images, Preprocess(input_size=16), DEVICE, output="logits", precision="fp32"
    )
    acc = (torch.from_numpy(logits).argmax(1) == val.labels).float().mean().item()
    assert ref[-1]["val/accuracy"] == pytest.approx(acc)

    monkeypatch.setenv("DEEPGAL_FAULT", "signal=SIGINT,epoch=2,step=4")
    with pytest.raises(Exception, match="interrupted at epoch 2 step 4/6"):
        train(tmp_path / "run", epochs=2, ema=0.9)
    monkeypatch.delenv("DEEPGAL_FAULT")
    resumed, _ = train(tmp_path / "run", epochs=2, ema=0.9)
    assert [m["val/loss"] for m in resumed] == [m["val/loss"] for m in ref]
    again = ckpt_io.load(tmp_path / "run" / "epoch_002.pt")
    for k, v in ckpt["model"].items():
        assert torch.equal(v, again["model"][k]), k


# ---- mixup / CutMix --------------------------------------------------------------------------


def test_mixup_cutmix_train_reproducibly_and_change_training(tmp_path):
    plain, _ = train(tmp_path / "plain", epochs=1)
    mixed, m1 = train(tmp_path / "mixed", epochs=1, mixup=0.4, cutmix=1.0)
    again, m2 = train(tmp_path / "again", epochs=1, mixup=0.4, cutmix=1.0)
    assert mixed[0]["train/loss"] == again[0]["train/loss"]
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()  # a missing or extra tensor is a difference too
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    # Soft targets: the loss is not the plain run's (same seed, same batches otherwise).
    assert mixed[0]["train/loss"] != pytest.approx(plain[0]["train/loss"], rel=1e-3)


# ---- random state and device placement --------------------------------------------------------


def _rng_round_trip(device: torch.device):
    _, gen = rng.epoch_generators(3, 1, device)
    torch.rand(5, generator=gen, device=device)
    state = rng.rank_state(gen, device)
    want = (
        torch.rand(4, generator=gen, device=device),
        torch.rand(4, device=device),
        torch.rand(4),
    )
    _, fresh = rng.epoch_generators(99, 9, device)  # everything reseeded elsewhere
    rng.restore_rank_state(state, fresh, device)
    got = (
        torch.rand(4, generator=fresh, device=device),
        torch.rand(4, device=device),
        torch.rand(4),
    )
    for a, b in zip(want, got, strict=True):
        assert torch.equal(a, b)
    return state


def test_rng_state_round_trip_cpu():
    assert _rng_round_trip(torch.device("cpu"))["cuda"] is None


@needs_cuda
def test_rng_state_round_trip_cuda():
    """The CUDA RNG (dropout on the GPU) is saved and restored, not only the CPU one."""
    assert _rng_round_trip(torch.device("cuda"))["cuda"] is not None


def test_split_stays_on_the_host_on_cpu_and_the_memory_rule():
    split = data(8)
    assert place_split(split, DEVICE) is split
    assert fits_on_device(4_000, 10_000)  # 40% of free memory is the limit
    assert not fits_on_device(4_001, 10_000)


@needs_cuda
def test_train_split_lives_in_gpu_memory_when_it_fits():
    cuda = torch.device("cuda")
    placed = place_split(data(8), cuda)
    assert placed.images.device.type == "cuda" and placed.images.dtype == torch.uint8
    free, _ = torch.cuda.mem_get_info(cuda)
    n = int(free) // 3 + 1  # more bytes than the free memory, held in one byte (stride 0)
    huge = Split(
        torch.zeros(1, 1, 1, 1, dtype=torch.uint8).expand(n, 1, 1, 3),
        torch.zeros(1, dtype=torch.long).expand(n),
    )
    assert place_split(huge, cuda).images.device.type == "cpu"


# ---- the whole GPU recipe, one tiny epoch on the CPU ------------------------------------------


@pytest.mark.slow  # ConvNeXt-Tiny in bf16 on a CPU without bf16 units: ~1.5 min on 2 cores
def test_the_gpu_recipe_trains_on_cpu_from_a_local_weights_file(tmp_path):
    """ConvNeXt-Tiny from a local torchvision weights file (as ImageNet weights would be),
    AdamW, label smoothing, EMA, mixup + CutMix, bf16, channels_last: one epoch of 2 steps."""
    import torchvision

    weights = tmp_path / "convnext_tiny_local.pth"
    torch.manual_seed(0)
    reference = torchvision.models.convnext_tiny(weights=None)
    torch.save(reference.state_dict(), weights)
    model = build_model("convnext_tiny", 10, 32, pretrained=str(weights))
    assert torch.equal(model.body.features[0][0].weight, reference.features[0][0].weight)
    cfg = dict(
        epochs=1,
        batch_size=8,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.05,
        label_smoothing=0.1,
        ema=0.999,
        mixup=0.2,
        cutmix=1.0,
        precision="bf16",
        channels_last=True,
        input_size=32,
    )
    run = spec(tmp_path / "ckpt", **cfg)
    run.preprocess = Preprocess(input_size=32)
    seen = []
    model.body.features[0][0].register_forward_hook(
        lambda m, i, o: (
            seen.append((o.dtype, i[0].is_contiguous(memory_format=torch.channels_last)))
            if m.training
            else None
        )
    )
    history = fit(model, data(16), data(10, 1), run, DEVICE)
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["train/loss"]))
    assert seen == [(torch.bfloat16, True)] * 2  # 16 images / batch 8
    ckpt = ckpt_io.load(tmp_path / "ckpt" / "epoch_001.pt")
    assert ckpt["ema_n_averaged"] == 2 and "train_model" in ckpt


@needs_cuda
def test_the_gpu_recipe_trains_resumes_and_scores_on_cuda(tmp_path, monkeypatch):
    """The whole recipe on a real GPU: resident split, compiled bf16 channels_last model, EMA,
    mixup + CutMix; interrupted mid-epoch and resumed to within bf16 noise of an uninterrupted
    run, scored by the inference path on the device."""
    cuda = torch.device("cuda")
    cfg = dict(
        epochs=2,
        batch_size=8,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.05,
        label_smoothing=0.1,
        ema=0.9,
        mixup=0.2,
        cutmix=1.0,
        precision="bf16",
        channels_last=True,
        compile=recipe.has_compiler(),
    )

    def run(where):
        seed_everything(7, deterministic=False)
        model = build_model("smallnet", 10, 16)
        return fit(model, place_split(data(), cuda), data(20, 1), spec(where, **cfg), cuda), model

    ref, _ = run(tmp_path / "ref")
    assert len(ref) == 2 and all(torch.isfinite(torch.tensor(m["train/loss"])) for m in ref)
    monkeypatch.setenv("DEEPGAL_FAULT", "signal=SIGINT,epoch=2,step=3")
    with pytest.raises(Exception, match="interrupted at epoch 2 step 3/6"):
        run(tmp_path / "run")
    monkeypatch.delenv("DEEPGAL_FAULT")
    resumed, model = run(tmp_path / "run")
    # bf16 on the GPU is not bit-deterministic across kernels chosen by cudnn.benchmark.
    assert resumed[-1]["val/loss"] == pytest.approx(ref[-1]["val/loss"], rel=0.05)
    images = data(20, 1).images
    probs = run_model(
        model, images, Preprocess(input_size=16), cuda, output="probs", precision="bf16"
    )
    assert probs.shape == (20, 10) and abs(float(probs.sum(1).mean()) - 1) < 1e-2
    on_gpu = run_model(
        model, images.to(cuda), Preprocess(input_size=16), cuda, output="probs", precision="bf16"
    )  # images already on the GPU
    assert on_gpu == pytest.approx(probs, abs=1e-3)


def test_a_cpu_run_names_its_cpu_and_no_gpu():
    assert machine("cpu") == machine() and "gpu" not in machine()
    label = machine_label(
        {
            "cpu": "AMD EPYC",
            "cpu_capability": "AVX512",
            "torch": "2.11.0",
            "gpu": "NVIDIA H200",
            "cuda": "13.0",
            "cudnn": "91900",
        }
    )
    assert label == "NVIDIA H200, CUDA 13.0, AMD EPYC, AVX512, torch 2.11.0"


@needs_cuda
def test_a_stage_run_on_cuda_records_the_gpu_it_ran_on(tmp_path, monkeypatch):
    """train.json's ``machine`` (and the MLflow tag made from it) names the GPU, whose kernels
    decide a CUDA run's numbers, not only the host CPU."""
    import dataclasses
    import json

    from deepgal import config
    from deepgal.training import train_variant
    from tests.helpers import make_workdir, paths

    root = make_workdir(tmp_path / "w", variant={"epochs": 1})
    monkeypatch.setenv("DEEPGAL_MLFLOW", "off")
    monkeypatch.chdir(root)
    run = config.resolve_variant(config.load_params(root / "params.yaml"), "smallnet")
    train_variant(dataclasses.replace(run, device="cuda"), paths(root))
    got = json.loads((root / "results/smallnet/train.json").read_text())["machine"]
    assert got["gpu"] == torch.cuda.get_device_name() and got["cuda"] == torch.version.cuda
