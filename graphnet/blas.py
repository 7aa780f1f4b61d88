"""Matrix products that add into their destination: ``out = a @ b + beta · out``.

numpy's ``matmul`` always overwrites its ``out``, so summing products (a convolution is one
product per kernel tap) costs an extra pass over the destination per term, or a gathered
matrix that concatenates the terms. BLAS's gemm adds for free (its ``beta``). numpy links a
BLAS but does not expose gemm, so this module calls the one numpy already loaded, through
:mod:`ctypes` (the standard library), found with threadpoolctl. No other library is loaded and
nothing is compiled.

When that BLAS cannot be found or fails a self-check, the same functions run on numpy alone
(a product, then an addition): slower, same results to rounding. Set ``GRAPHNET_NUMPY_GEMM=1``
to force that.

Operands are C-contiguous numpy arrays of float32 or float64, checked before BLAS sees them,
so a call can never read or write outside the arrays numpy gave it.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading

import numpy as np

NUMPY_ENV = "GRAPHNET_NUMPY_GEMM"

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# (symbol prefix, suffix, integer type): numpy's own wheels ship "scipy-openblas" with 64-bit
# integers and prefixed, suffixed names; other OpenBLAS builds use one suffix or none.
_CANDIDATES = (("scipy_", "64_", ctypes.c_int64), ("", "64_", ctypes.c_int64),
               ("", "", ctypes.c_int))

_lock = threading.Lock()
_routines: dict | None = None


def sum_products(source: np.ndarray, starts, matrices: np.ndarray, out: np.ndarray, *,
                 trans_b: bool = False, accumulate: bool = False) -> np.ndarray:
    """``out = Σ_i source[starts[i] : starts[i] + len(out)] @ op(matrices[i])``, op transposing
    when ``trans_b``: a sum of products of row windows of one array, each window with its own
    matrix, accumulated by BLAS in ``out`` (a convolution's kernel taps). With ``accumulate``
    the sum is added to what ``out`` holds (a bias, say)."""
    rows, columns = out.shape
    inner = matrices.shape[2] if trans_b else matrices.shape[1]
    _check(source, starts, rows, matrices, out)
    if (matrices.shape[1:] != ((columns, inner) if trans_b else (inner, columns))
            or len(matrices) != len(starts) or source.shape[1] != inner):
        raise ValueError(f"sum_products: {len(starts)} windows of {rows}×{source.shape[1]} and "
                         f"matrices {matrices.shape} do not give {out.shape}")
    routine = _routine(out.dtype)
    if routine is None:
        for term, start in enumerate(starts):
            right = matrices[term].T if trans_b else matrices[term]
            _numpy_product(source[start:start + rows], right, out,
                           accumulate=accumulate or term > 0)
        return out
    itemsize, row_bytes = out.itemsize, source.strides[0]
    base, matrix_bytes = source.ctypes.data, matrices.strides[0]
    matrix_base, out_address = matrices.ctypes.data, out.ctypes.data
    ldb = matrices.shape[2]
    flag_b = _TRANS if trans_b else _NO_TRANS
    for term, start in enumerate(starts):
        routine(_ROW_MAJOR, _NO_TRANS, flag_b, rows, columns, inner, 1.0,
                base + start * row_bytes, source.shape[1], matrix_base + term * matrix_bytes,
                ldb, 1.0 if accumulate or term else 0.0, out_address, columns)
    return out


def window_products(source: np.ndarray, starts, matrix: np.ndarray,
                    outs: np.ndarray) -> np.ndarray:
    """``outs[i] = source[starts[i] : starts[i] + len(matrix)]ᵀ @ matrix``: each row window of
    one array, transposed, times one matrix (a convolution's weight gradient per kernel tap)."""
    window_rows = len(matrix)
    _check(source, starts, window_rows, matrix[None], outs)
    if outs.shape != (len(starts), source.shape[1], matrix.shape[1]):
        raise ValueError(f"window_products: {len(starts)} windows of {source.shape[1]} columns "
                         f"and a {matrix.shape} matrix do not give {outs.shape}")
    routine = _routine(outs.dtype)
    if routine is None:
        for term, start in enumerate(starts):
            np.matmul(source[start:start + window_rows].T, matrix, out=outs[term])
        return outs
    rows, columns = outs.shape[1:]
    row_bytes, base = source.strides[0], source.ctypes.data
    matrix_address, out_base, out_bytes = matrix.ctypes.data, outs.ctypes.data, outs.strides[0]
    for term, start in enumerate(starts):
        routine(_ROW_MAJOR, _TRANS, _NO_TRANS, rows, columns, window_rows, 1.0,
                base + start * row_bytes, source.shape[1], matrix_address, columns, 0.0,
                out_base + term * out_bytes, columns)
    return outs


def strided_products(a: np.ndarray, b: np.ndarray, c: np.ndarray, terms, *,
                     accumulate: bool = False) -> np.ndarray:
    """Run gemm ``terms`` on sub-matrices of three C-contiguous arrays, each seen as flat:
    a term ``(trans_a, m, n, k, a_offset, lda, b_offset, ldb, c_offset, ldc, beta)`` computes
    ``C = op(A) @ B + beta · C`` (row-major; op(A) is m×k, B k×n, C m×n; beta 0 or 1) with
    each matrix at that element offset and leading dimension. Products over a column range
    or every other row of a buffer (a conv's taps over pairs of pixels), which
    ``sum_products``' contiguous windows cannot express. With ``accumulate`` every beta is
    1. ``terms`` is a tuple of tuples, each term's shape checked once per distinct tuple and
    its reach checked against the arrays' sizes at every call."""
    a_need, b_need, c_need = _extents(terms)
    dtype = c.dtype
    if dtype.char not in "fd" or a.dtype != dtype or b.dtype != dtype:
        raise TypeError(f"products need one float dtype, found {a.dtype}, {b.dtype}, {dtype}")
    for array in (a, b, c):
        if not array.flags.c_contiguous:
            raise ValueError("products need C-contiguous arrays")
    if a.size < a_need or b.size < b_need or c.size < c_need:
        raise ValueError(f"strided_products: terms reach {a_need}, {b_need}, {c_need} elements "
                         f"of arrays of {a.size}, {b.size}, {c.size}")
    routine = _routine(dtype)
    if routine is None:
        flat = [array.reshape(-1) for array in (a, b, c)]
        for trans_a, m, n, k, a_offset, lda, b_offset, ldb, c_offset, ldc, beta in terms:
            left = _strided(flat[0], a_offset, (k, m) if trans_a else (m, k), lda)
            right = _strided(flat[1], b_offset, (k, n), ldb)
            _numpy_product(left.T if trans_a else left, right,
                           _strided(flat[2], c_offset, (m, n), ldc),
                           accumulate=accumulate or beta != 0)
        return c
    itemsize = dtype.itemsize
    a_base, b_base, c_base = a.ctypes.data, b.ctypes.data, c.ctypes.data
    for trans_a, m, n, k, a_offset, lda, b_offset, ldb, c_offset, ldc, beta in terms:
        routine(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _NO_TRANS, m, n, k, 1.0,
                a_base + a_offset * itemsize, lda, b_base + b_offset * itemsize, ldb,
                1.0 if accumulate else beta, c_base + c_offset * itemsize, ldc)
    return c


@functools.lru_cache(maxsize=256)
def _extents(terms) -> tuple[int, int, int]:
    """Elements of A, B and C that ``terms`` reach, after checking each term's shape."""
    needs = [0, 0, 0]
    for trans_a, m, n, k, a_offset, lda, b_offset, ldb, c_offset, ldc, _ in terms:
        a_rows, a_columns = (k, m) if trans_a else (m, k)
        for index, (offset, rows, columns, leading) in enumerate(
                ((a_offset, a_rows, a_columns, lda), (b_offset, k, n, ldb),
                 (c_offset, m, n, ldc))):
            if min(rows, columns) < 1 or offset < 0 or leading < columns:
                raise ValueError(f"strided_products: a {rows}×{columns} matrix at {offset} "
                                 f"with leading dimension {leading}")
            needs[index] = max(needs[index], offset + (rows - 1) * leading + columns)
    return tuple(needs)


def _strided(flat: np.ndarray, offset: int, shape, leading: int) -> np.ndarray:
    """The (rows, columns) view of a flat array at ``offset``, rows ``leading`` apart (bounds
    checked by the caller)."""
    return np.lib.stride_tricks.as_strided(flat[offset:], shape,
                                           (leading * flat.itemsize, flat.itemsize))


def column_sums(rows: np.ndarray) -> np.ndarray:
    """The sums of ``rows``' columns (over its next-to-last axis, a stack of matrices each on
    its own) as a product with a row of ones: BLAS's blocked sums, measured 3x faster than
    numpy's ``sum(axis=0)`` on a conv's gradient rows, and rounding less than its row-by-row
    accumulation."""
    return _ones(rows.shape[-2], rows.dtype) @ rows


@functools.lru_cache(maxsize=64)
def _ones(length: int, dtype) -> np.ndarray:
    ones = np.ones(length, dtype)
    ones.flags.writeable = False
    return ones


def available() -> bool:
    """Whether products add into their destination inside BLAS (else numpy's two passes)."""
    return _routine(np.dtype(np.float32)) is not None


def _check(source, starts, window_rows: int, matrices, out) -> None:
    """Refuse what BLAS could read or write out of bounds: every operand C-contiguous and of
    one float dtype, every window inside ``source``. Checked once per call, not per product:
    a Python check per product, under the GIL, stalled the other threads' products."""
    dtype = out.dtype
    if dtype.char not in "fd" or source.dtype != dtype or matrices.dtype != dtype:
        raise TypeError(f"products need one float dtype, found {source.dtype}, "
                        f"{matrices.dtype}, {dtype}")
    for array in (source, matrices, out):
        if not array.flags.c_contiguous:
            raise ValueError("products need C-contiguous arrays")
    if source.ndim != 2:
        raise ValueError(f"the source of row windows must be 2-D, found {source.shape}")
    if starts and (min(starts) < 0 or max(starts) + window_rows > len(source)):
        raise ValueError(f"row windows {min(starts)}…{max(starts) + window_rows} outside the "
                         f"source's {len(source)} rows")


def _numpy_product(left, right, out, accumulate: bool) -> None:
    if accumulate:
        out += left @ right
    else:
        np.matmul(left, right, out=out)


def _routine(dtype: np.dtype):
    """The cblas gemm for ``dtype`` (float32 or float64), or None."""
    global _routines
    if _routines is None:
        with _lock:
            if _routines is None:
                _routines = _load()
    return _routines.get(np.dtype(dtype).char)


OPENMP_ENV = "KMP_DUPLICATE_LIB_OK"
"""What threadpoolctl sets in os.environ as it is imported (to "True": Intel's OpenMP then
loads a second copy of itself where it would stop the process), for the rest of the process."""


def threadpoolctl():
    """The threadpoolctl module, imported as a guest: the environment variable its import
    sets (:data:`OPENMP_ENV`) is put back as the caller had it. Every import of it in graphnet
    goes through here."""
    import sys

    module = sys.modules.get("threadpoolctl")
    if module is None:
        before = os.environ.get(OPENMP_ENV)
        try:
            import threadpoolctl as module
        finally:
            if before is None:
                os.environ.pop(OPENMP_ENV, None)
            else:
                os.environ[OPENMP_ENV] = before
    return module


def _load() -> dict:
    """{dtype char: routine} for the BLAS numpy loaded, each checked against numpy once."""
    if os.environ.get(NUMPY_ENV, "").strip() not in ("", "0"):
        return {}
    paths = [info["filepath"] for info in threadpoolctl().threadpool_info()
             if info.get("user_api") == "blas"]
    # the one numpy's wheel carries first (numpy.libs/, numpy/.libs/): PyTorch or SciPy may
    # have loaded BLAS libraries of their own
    site = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    paths.sort(key=lambda path: "numpy" not in os.path.relpath(os.path.abspath(path), site))
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, integer in _CANDIDATES:
            routines = {}
            for char, letter, real in (("f", "s", ctypes.c_float), ("d", "d", ctypes.c_double)):
                routine = getattr(library, f"{prefix}cblas_{letter}gemm{suffix}", None)
                if routine is None:
                    break
                routine.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer,
                                    integer, real, ctypes.c_void_p, integer, ctypes.c_void_p,
                                    integer, real, ctypes.c_void_p, integer]
                routine.restype = None
                routines[char] = routine
            if len(routines) == 2 and _self_check(routines):
                return routines
    return {}


def _self_check(routines: dict) -> bool:
    """Products with every flag agree with numpy's: a wrong integer width or argument order
    would not."""
    rng = np.random.default_rng(0)
    for char, routine in routines.items():
        dtype = np.dtype(char)
        a = rng.standard_normal((5, 3)).astype(dtype)
        b = rng.standard_normal((4, 3)).astype(dtype)
        out = np.ones((5, 4), dtype)
        routine(_ROW_MAJOR, _NO_TRANS, _TRANS, 5, 4, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 3,
                1.0, out.ctypes.data, 4)
        if not np.allclose(out, a @ b.T + 1, rtol=1e-5, atol=1e-5):
            return False
        routine(_ROW_MAJOR, _TRANS, _NO_TRANS, 3, 3, 5, 1.0, a.ctypes.data, 3, a.ctypes.data, 3,
                0.0, out.ctypes.data, 4)
        if not np.allclose(out[:3, :3], a.T @ a, rtol=1e-5, atol=1e-5):
            return False
    return True
