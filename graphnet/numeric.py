"""Finite differences and error measures shared by gradient checks and tests."""
from __future__ import annotations

from typing import Callable

import numpy as np


def central_difference(loss_of: Callable[[], float], array: np.ndarray, index,
                       epsilon: float = 1e-6) -> float:
    """d loss / d array[index] by central differences, perturbing ``array`` in place."""
    original = array[index]
    array[index] = original + epsilon
    plus = loss_of()
    array[index] = original - epsilon
    minus = loss_of()
    array[index] = original
    return (plus - minus) / (2 * epsilon)


def numerical_gradient(loss_of: Callable[[], float], array: np.ndarray,
                       epsilon: float = 1e-6) -> np.ndarray:
    """The full numerical gradient of ``loss_of()`` with respect to every element of ``array``."""
    gradient = np.zeros(array.shape, dtype=np.float64)
    for index in np.ndindex(array.shape):
        gradient[index] = central_difference(loss_of, array, index, epsilon)
    return gradient


def relative_error(analytic, numeric, floor: float = 1e-12) -> float:
    """``‖a − n‖ / max(‖a‖, ‖n‖, floor)``: relative for gradients larger than ``floor``,
    absolute (scaled by ``floor``) for smaller ones, where round-off dominates."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric), floor)
    return float(np.linalg.norm(analytic - numeric) / scale)
