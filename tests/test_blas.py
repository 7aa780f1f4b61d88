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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
def test_strided_products_on_column_ranges_and_row_strides(route, dtype, accumulate):
    """Products of sub-matrices given by offsets and leading dimensions: rows at a stride,
    column ranges, transposed or not, into a part of the output's columns."""
    rng = np.random.default_rng(2)
    source = rng.standard_normal((12, 6)).astype(dtype)   # seen flat: 6 pairs of 3-wide rows
    matrices = rng.standard_normal(48).astype(dtype)
    out = rng.standard_normal((4, 8)).astype(dtype)
    before = out.astype(np.float64)
    terms = ((False, 4, 8, 2, 0, 12, 12, 8, 0, 8, 0.0),    # a 2-deep left part, all columns
             (False, 4, 4, 3, 3, 12, 0, 4, 4, 8, 1.0),     # rows 1, 5, 9, 13 of (24, 3): right
             (True, 3, 4, 5, 1, 6, 28, 4, 0, 8, 1.0))      # 5×3 taken transposed
    blas.strided_products(source, matrices, out, terms, accumulate=accumulate)
    flat = source.reshape(-1).astype(np.float64)
    first = flat[3:3 + 4 * 12].reshape(4, 12)[:, :3] @ matrices[:12].reshape(3, 4)
    second = flat[:4 * 12].reshape(4, 12)[:, :2] @ matrices[12:28].reshape(2, 8)
    third = flat[1:1 + 5 * 6].reshape(5, 6)[:, :3].T @ matrices[28:48].reshape(5, 4)
    expected = (before if accumulate else np.zeros_like(before)) + second
    expected[:, 4:] += first
    expected[:3, :4] += third
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)


def test_strided_products_refuse_terms_beyond_their_arrays(route):
    a, b, c = np.ones((4, 3)), np.ones(6), np.ones((2, 2))
    fits = (False, 2, 2, 3, 0, 6, 0, 2, 0, 2, 0.0)
    blas.strided_products(a, b, c, (fits,))
    for term, match in [((False, 2, 2, 3, 4, 6, 0, 2, 0, 2, 0.0), "reach"),   # a's end
                        ((False, 2, 2, 3, 0, 6, 1, 2, 0, 2, 0.0), "reach"),   # b's end
                        ((False, 2, 2, 3, 0, 6, 0, 2, 1, 2, 0.0), "reach"),   # c's end
                        ((False, 2, 2, 3, -1, 6, 0, 2, 0, 2, 0.0), "leading"),
                        ((False, 2, 2, 3, 0, 2, 0, 2, 0, 2, 0.0), "leading"),  # lda < k
                        ((False, 0, 2, 3, 0, 6, 0, 2, 0, 2, 0.0), "leading")]:
        with pytest.raises(ValueError, match=match):
            blas.strided_products(a, b, c, (term,))
    with pytest.raises(ValueError, match="contiguous"):
        blas.strided_products(np.ones((4, 6))[:, ::2], b, c, (fits,))
    with pytest.raises(TypeError, match="dtype"):
        blas.strided_products(a.astype(np.float32), b, c, (fits,))
