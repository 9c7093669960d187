"""Derive the polynomial coefficients of ``fastact/_vmath.py``.

Each approximation in ``_vmath`` evaluates a polynomial in a reduced argument; this
script fits that polynomial to the function it stands for (near-minimax, by Chebyshev
interpolation in 50-digit arithmetic with mpmath), rounds the coefficients to the working
dtype, and prints them with the fit's error, so that ``_vmath`` can be checked and
regenerated.  ``tests/test_vmath.py`` measures the accuracy of the finished functions;
this script only explains where their constants come from::

    pip install mpmath
    python tools/fit_vmath.py              # every fit
    python tools/fit_vmath.py tanh_f32     # one
"""

from __future__ import annotations

import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 50
LN2 = mp.log(2)


def _exp_tail(r):
    # (exp(r) - 1 - r) / r**2, continued to r = 0
    if abs(r) < mp.mpf("1e-20"):
        return mp.mpf(1) / 2 + r / 6
    return (mp.exp(r) - 1 - r) / r**2


def _exp_quotient(r):
    # (exp(r) - 1) / r, continued to r = 0
    if abs(r) < mp.mpf("1e-20"):
        return 1 + r / 2
    return (mp.exp(r) - 1) / r


def _log_tail(z):
    # R(z) / z where log1p(f) = f - f^2/2 + s (f^2/2 + R(z)), s = f / (2 + f), z = s^2:
    # R(z) = sum_{k >= 1} 2 z^k / (2k + 1)
    if z < mp.mpf("1e-30"):
        return mp.mpf(2) / 3
    s = mp.sqrt(z)
    return (mp.log((1 + s) / (1 - s)) / s - 2) / z


def _tanh_tail(z):
    # (tanh(a) - a) / a^3 with z = a^2
    if z < mp.mpf("1e-30"):
        return -mp.mpf(1) / 3
    a = mp.sqrt(z)
    return (mp.tanh(a) - a) / a**3


def _erf_small(z):
    # erf(x) / x with z = x^2
    if z < mp.mpf("1e-30"):
        return 2 / mp.sqrt(mp.pi)
    x = mp.sqrt(z)
    return mp.erf(x) / x


def _erfc_exponent(center):
    """F(t) = log(erfc(z) / t) + z^2 with z = 2/t - 2 (t = 2 / (2 + z)), as a function of
    u = t - center: centred, the coefficients round without cancelling."""

    def F(u):
        t = u + center
        z = 2 / t - 2
        return mp.log(mp.erfc(z) / t) + z**2

    return F


def _erfc_piece(lo, hi, degree, dtype):
    """F on the t-interval [lo, hi], centred."""
    c = (mp.mpf(lo) + mp.mpf(hi)) / 2
    return (_erfc_exponent(c), (mp.mpf(lo) - c, mp.mpf(hi) - c), degree, dtype, "absolute", float(c))


#: name -> (function, interval, degree, working dtype[, "absolute"]): the error is
#: relative to the function's value unless "absolute" (for F, an exponent).
FITS = {
    "exp_f32": (_exp_tail, (-LN2 / 2, LN2 / 2), 4, np.float32),
    "exp_below_f32": (_exp_quotient, (-LN2 / 2, LN2 / 2), 5, np.float32),
    "exp_f64": (_exp_tail, (-LN2 / 2, LN2 / 2), 10, np.float64),
    "log_f32": (_log_tail, (0, mp.mpf("0.0295")), 2, np.float32),
    "log_f64": (_log_tail, (0, mp.mpf("0.0295")), 6, np.float64),
    "tanh_f32": (_tanh_tail, (0, mp.mpf("0.3025")), 5, np.float32),
    "tanh_f64": (_tanh_tail, (0, mp.mpf("0.3025")), 11, np.float64),
    "erf_f32": (_erf_small, (0, 1), 6, np.float32),
    "erf_f64": (_erf_small, (0, 1), 12, np.float64),
    # erfc(z) for z in [0.5, 10.1] (beyond, it is 0 in float32): t in [0.165, 0.8].
    "erfc_f32": _erfc_piece("0.165", "0.8", 9, np.float32),
    # z in [0.5, 27.3] (beyond, 0 in float64): t in [0.0683, 0.8], in four pieces.
    "erfc_f64_a": _erfc_piece("0.0683", "0.3", 13, np.float64),
    "erfc_f64_b": _erfc_piece("0.3", "0.5", 13, np.float64),
    "erfc_f64_c": _erfc_piece("0.5", "0.65", 13, np.float64),
    "erfc_f64_d": _erfc_piece("0.65", "0.8", 13, np.float64),
}


def fit(name):
    fn, (a, b), degree, dtype, *kind = FITS[name]
    kind = kind[:1]
    poly, err = mp.chebyfit(fn, [a, b], degree + 1, error=True)
    coeffs = [dtype(float(c)) for c in reversed(poly)]  # lowest degree first
    # The error of the rounded coefficients, on a fine grid.
    worst = 0
    for k in range(2001):
        v = a + (b - a) * k / 2000
        p = mp.mpf(0)
        for c in reversed(coeffs):
            p = p * v + mp.mpf(float(c))
        scale = 1 if kind == ["absolute"] else abs(fn(v))
        worst = max(worst, abs(p - fn(v)) / scale)
    return coeffs, float(err), float(worst)


def main(names):
    for name in names or FITS:
        coeffs, err, worst = fit(name)
        extra = FITS[name][4:]
        kind = "absolute" if extra[:1] == ("absolute",) else "relative"
        centre = f", in u = t - {extra[1]!r}" if len(extra) > 1 else ""
        print(f"{name}: fit error {err:.3g}, {kind} error with rounded coefficients {worst:.3g}{centre}")
        for k, c in enumerate(coeffs):
            print(f"    c{k} = {c!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
