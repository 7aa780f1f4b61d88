"""Sums of row-window products through numpy's own BLAS: equal to numpy's products in both
dtypes, with and without BLAS, and refusing any operand BLAS could read or write out of."""
from __future__ import annotations

import numpy as np
import pytest

from graphnet import blas


@pytest.fixture(params=["blas", "numpy"])
def route(request, monkeypatch):
    """Each test runs through BLAS and through the numpy fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(blas, "_routines", {})
    elif not blas.available():
        pytest.skip("numpy's BLAS cannot be called on this machine")
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_sum_products_adds_each_windows_product(route, dtype, trans_b, accumulate):
    rng = np.random.default_rng(0)
    source = rng.standard_normal((40, 6)).astype(dtype)
    starts = [0, 3, 17]
    matrices = rng.standard_normal((3, 5, 6) if trans_b else (3, 6, 5)).astype(dtype)
    out = rng.standard_normal((20, 5)).astype(dtype)
    expected = out.astype(np.float64) if accumulate else np.zeros((20, 5))
    for start, matrix in zip(starts, matrices):
        expected = expected + source[start:start + 20] @ (matrix.T if trans_b else matrix)
    blas.sum_products(source, starts, matrices, out, trans_b=trans_b, accumulate=accumulate)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_window_products_transpose_each_window(route, dtype):
    rng = np.random.default_rng(1)
    source = rng.standard_normal((30, 4)).astype(dtype)
    matrix = rng.standard_normal((25, 3)).astype(dtype)
    outs = np.empty((2, 4, 3), dtype)
    blas.window_products(source, [5, 0], matrix, outs)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(outs[0], source[5:30].T @ matrix, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(outs[1], source[0:25].T @ matrix, rtol=tolerance, atol=tolerance)


def test_refuses_windows_outside_the_source(route):
    source, matrices, out = np.ones((10, 2)), np.ones((1, 2, 2)), np.ones((5, 2))
    with pytest.raises(ValueError, match="outside"):
        blas.sum_products(source, [6], matrices, out)
    with pytest.raises(ValueError, match="outside"):
        blas.sum_products(source, [-1], matrices, out)
    with pytest.raises(ValueError, match="outside"):
        blas.window_products(source, [8], np.ones((3, 2)), np.ones((1, 2, 2)))


def test_refuses_strided_operands_mixed_dtypes_and_wrong_shapes(route):
    source, matrices, out = np.ones((10, 2)), np.ones((1, 2, 2)), np.ones((5, 2))
    with pytest.raises(ValueError, match="contiguous"):
        blas.sum_products(np.ones((10, 4))[:, ::2], [0], matrices, out)
    with pytest.raises(ValueError, match="contiguous"):
        blas.sum_products(source, [0], matrices, np.ones((5, 4))[:, :2])
    with pytest.raises(TypeError, match="dtype"):
        blas.sum_products(source.astype(np.float32), [0], matrices, out)
    with pytest.raises(TypeError, match="dtype"):
        blas.sum_products(source.astype(int), [0], matrices.astype(int), out.astype(int))
    with pytest.raises(ValueError, match="do not give"):
        blas.sum_products(source, [0, 1], matrices, out)
    with pytest.raises(ValueError, match="do not give"):
        blas.window_products(source, [0], np.ones((5, 3)), np.ones((1, 2, 2)))


def test_numpy_gemm_setting_turns_blas_off(monkeypatch):
    monkeypatch.setenv(blas.NUMPY_ENV, "1")
    assert blas._load() == {}
    monkeypatch.delenv(blas.NUMPY_ENV)
    loaded = blas._load()
    assert loaded == {} or set(loaded) == {"f", "d"}


def test_refuses_a_source_narrower_or_wider_than_the_matrices(route):
    matrices, out = np.ones((1, 4, 3)), np.ones((5, 3))
    for width in (2, 5):
        with pytest.raises(ValueError, match="do not give"):
            blas.sum_products(np.ones((10, width)), [0], matrices, out)
