"""Compiled kernels of :class:`fastact.layers.SoftmaxCrossEntropy` (imported on its first use).

Over C-contiguous rows of logits ``x`` (n, k), one row at a time:

* forward: ``m = x[a]`` at the row's first argmax ``a``; ``t_j = exp(x_j - m)`` (the
  difference taken exactly, as in softmax), stored in
  ``y``; ``rest = sum_{j != a} t_j`` (``t_a`` is exactly 1); ``y_j = t_j / (1 + rest)``;
  and the loss ``-log y_c = (m - x_c) + log1p(rest)``, whose terms keep full relative
  precision even where the loss is tiny.  One ``exp`` per element, one ``log1p`` per row.
* backward: ``g_j = s (y_j - [j == c])`` in one pass (``s`` the row's weight).

The same row function runs in the one-thread loop and in the ``prange`` loop, so both
give the same bits.  ``exp`` is :mod:`fastact._vmath`'s, which vectorises.
"""

from __future__ import annotations

import math

from numba import njit, prange

from fastact import _cpu

# e**(a - b) with the difference taken exactly, as softmax computes it (the declarations'
# helper, compiled with the CPU kernels).
exp_diff = _cpu.kernels().helper__exp_diff

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_JIT)
def _row_stats(x, y):
    """Fill ``y`` with the softmax of ``x``; return ``(argmax, log(sum(exp(x - max))))``."""
    n = x.shape[0]
    a = 0
    m = x[0]
    for j in range(1, n):
        v = x[j]
        if v > m or (v != v and m == m):  # the first NaN wins, so the row is NaN
            m = v
            a = j
    for j in range(n):
        y[j] = exp_diff(x[j], m)
    # Every term but t_a (exactly 1): adding it first would round a tiny rest away.
    rest = 0.0
    for j in range(a):
        rest += y[j]
    for j in range(a + 1, n):
        rest += y[j]
    rest += y[a] - 1.0  # 0, or NaN in a NaN row
    inv = 1.0 / (1.0 + rest)
    for j in range(n):
        y[j] = y[j] * inv
    return a, math.log1p(rest)


@njit(**_JIT)
def first_bad_label(labels, k):
    """The index of the first label outside ``[0, k)``, or -1."""
    for i in range(labels.shape[0]):
        if labels[i] < 0 or labels[i] >= k:
            return i
    return -1


@njit(**_JIT)
def _forward_labels_row(x, c, y):
    a, log_s = _row_stats(x, y)
    return (x[a] - x[c]) + log_s


@njit(**_JIT)
def _forward_probs_row(x, t, y):
    a, log_s = _row_stats(x, y)
    total = 0.0
    for j in range(x.shape[0]):
        if t[j] != 0.0:  # 0 * log 0 is 0, at -inf logits too
            total += t[j] * ((x[a] - x[j]) + log_s)
    return total


@njit(**_JIT)
def forward_labels(x, labels, y, losses):
    """Returns the index of the first label outside ``[0, k)`` (nothing computed), or -1."""
    bad = first_bad_label(labels, x.shape[1])
    if bad < 0:
        for i in range(x.shape[0]):
            losses[i] = _forward_labels_row(x[i], labels[i], y[i])
    return bad


@njit(parallel=True, **_JIT)
def forward_labels_parallel(x, labels, y, losses):
    bad = first_bad_label(labels, x.shape[1])
    if bad < 0:
        for i in prange(x.shape[0]):
            losses[i] = _forward_labels_row(x[i], labels[i], y[i])
    return bad


@njit(**_JIT)
def forward_probs(x, t, y, losses):
    for i in range(x.shape[0]):
        losses[i] = _forward_probs_row(x[i], t[i], y[i])


@njit(parallel=True, **_JIT)
def forward_probs_parallel(x, t, y, losses):
    for i in prange(x.shape[0]):
        losses[i] = _forward_probs_row(x[i], t[i], y[i])


@njit(**_JIT)
def _backward_labels_row(y, c, s, g):
    for j in range(y.shape[0]):
        g[j] = y[j] * s
    g[c] = (y[c] - 1.0) * s


@njit(**_JIT)
def backward_labels(y, labels, scale, g):
    for i in range(y.shape[0]):
        _backward_labels_row(y[i], labels[i], scale[i], g[i])


@njit(parallel=True, **_JIT)
def backward_labels_parallel(y, labels, scale, g):
    for i in prange(y.shape[0]):
        _backward_labels_row(y[i], labels[i], scale[i], g[i])


@njit(**_JIT)
def _backward_probs_row(y, t, s, g):
    for j in range(y.shape[0]):
        g[j] = (y[j] - t[j]) * s


@njit(**_JIT)
def backward_probs(y, t, scale, g):
    for i in range(y.shape[0]):
        _backward_probs_row(y[i], t[i], scale[i], g[i])


@njit(parallel=True, **_JIT)
def backward_probs_parallel(y, t, scale, g):
    for i in prange(y.shape[0]):
        _backward_probs_row(y[i], t[i], scale[i], g[i])
