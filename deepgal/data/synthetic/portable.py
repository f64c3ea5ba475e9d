"""Maths that gives the same bits on every x86-64 CPU, so a seed renders the same bytes anywhere.

numpy sends ``power`` (``**``), ``tan``, ``arctan2``, ``arcsinh``, ``hypot`` and float64
``arcsin`` to Intel's SVML on CPUs with AVX-512 and to its own code elsewhere; the two round
the last bit differently. Before this module that changed 35 of the default set's 2.46 M
pixel values by one grey level between an AVX-512 and an AVX2 machine, and with them the data
file's hash, the split and every stage after it. numpy's float32 ``exp``, ``log``, ``sin`` and
``cos`` are its own code on every x86 target (bit-identical with and without AVX-512,
``tests/test_synthetic_portable.py``), and ``+ - * / sqrt`` are exact IEEE operations, so the
functions below are built from those. The catalogue's few float64 values use Python's
``math`` (the C library), which does not depend on the vector unit.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def powf(x, y) -> np.ndarray:
    """``x ** y`` in float32 for ``x > 0``, as exp(y log x)."""
    return np.exp(np.asarray(y, F32) * np.log(np.asarray(x, F32)))


def tanf(x: np.ndarray) -> np.ndarray:
    return np.sin(x) / np.cos(x)


def hypotf(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sqrt(a^2 + b^2) (no overflow guard: used on lengths of order 1)."""
    return np.sqrt(a * a + b * b)


def asinhf(x: np.ndarray) -> np.ndarray:
    """arcsinh, as sign(x) log(|x| + sqrt(x^2 + 1))."""
    a = np.abs(x)
    return np.sign(x) * np.log(a + np.sqrt(a * a + F32(1)))


def atan2f(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """arctan2 in float64, rounded to float32: the CPUs' float64 results differ by at most one
    float64 ulp, which rounds to the same float32 except once in ~10^9 values."""
    return np.arctan2(y.astype(np.float64), x.astype(np.float64)).astype(F32)


def each(f, values: np.ndarray) -> np.ndarray:
    """``f`` (a ``math`` function of one float) applied to each value -> float64 array."""
    return np.fromiter(
        (f(float(v)) for v in np.ravel(values)), np.float64, count=np.size(values)
    ).reshape(np.shape(values))


def log_uniform(lo: float, hi: float, u: np.ndarray) -> np.ndarray:
    """``lo * (hi / lo) ** u`` in float64 via ``math.pow``, element by element."""
    return each(lambda v: lo * math.pow(hi / lo, v), u)
