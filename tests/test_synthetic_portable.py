"""The embedded galaxies are the same bytes with and without AVX-512.

numpy picks its vector kernels at run time and lets ``NPY_DISABLE_CPU_FEATURES`` switch the
AVX-512 ones off, so one machine can render both ways. Before deepgal.data.synthetic.portable,
35 of 2.46 M pixel values (200 images of 64 px) and the catalogue's positions differed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from deepgal.data.synthetic import portable

RENDER = """
import sys, numpy as np
from deepgal.data.synthetic import render
from deepgal.data.synthetic.catalogue import positions, redshift
images, labels = render(20, 64, seed=42)
ra, dec, _ = positions(labels, 42)
np.savez(sys.argv[1], images=images, ra=ra, dec=dec, z=redshift(len(labels), 42))
"""


def _avx512_kernels() -> list[str]:
    """numpy's dispatch targets that use AVX-512 and this CPU has (empty: nothing to compare)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [
        f for f in __cpu_dispatch__ if ("512" in f or f == "X86_V4") and __cpu_features__.get(f)
    ]


def _render(path, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    subprocess.run([sys.executable, "-c", RENDER, str(path)], check=True, env=env)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_same_bytes_with_and_without_avx512(tmp_path):
    off = _avx512_kernels()
    if not off:
        pytest.skip("this CPU has no AVX-512 kernels for numpy to switch off")
    with_avx512 = _render(tmp_path / "a.npz", {})
    without = _render(tmp_path / "b.npz", {"NPY_DISABLE_CPU_FEATURES": " ".join(off)})
    for key, value in with_avx512.items():
        differ = int(np.sum(value != without[key]))
        assert differ == 0, f"{key}: {differ} values differ with AVX-512 off ({off})"


def test_portable_functions_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.uniform(1e-3, 50, 10_000).astype(np.float32)
    y = rng.uniform(-3, 3, 10_000).astype(np.float32)
    s = rng.uniform(-20, 20, 10_000).astype(np.float32)
    a = rng.uniform(-1.5, 1.5, 10_000).astype(np.float32)

    def close(got, want):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)

    close(portable.powf(x, y), x.astype(np.float64) ** y)
    close(portable.tanf(a), np.tan(a.astype(np.float64)))
    close(portable.hypotf(x, y), np.hypot(x.astype(np.float64), y))
    close(portable.asinhf(s), np.arcsinh(s.astype(np.float64)))
    close(portable.atan2f(y, s), np.arctan2(y.astype(np.float64), s))
    assert portable.powf(x, y).dtype == np.float32 and portable.atan2f(y, s).dtype == np.float32
    u = rng.random(100)
    np.testing.assert_allclose(portable.log_uniform(0.005, 0.15, u), 0.005 * 30.0**u, rtol=1e-14)
