"""fastact against PyTorch in float64, where PyTorch is installed (it is not a test
dependency): the function, its derivative and second derivative by autograd, at random
points and at every declared kink, with PyTorch's conventions there."""

import numpy as np
import pytest
from _helpers import param_sets, params_id

import fastact as fa
from fastact._spec import kink_points

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: fastact name -> the PyTorch function of (tensor, **params), where PyTorch has one.
TORCH = {
    "relu": lambda t, at_zero=0.0: F.relu(t),
    "leaky_relu": lambda t, negative_slope=0.01: F.leaky_relu(t, negative_slope),
    "relu6": lambda t: F.relu6(t),
    "hardtanh": lambda t, min_val=-1.0, max_val=1.0: F.hardtanh(t, min_val, max_val),
    "threshold": lambda t, threshold=0.0, value=0.0: F.threshold(t, threshold, value),
    "elu": lambda t, alpha=1.0: F.elu(t, alpha),
    "selu": lambda t: F.selu(t),
    "celu": lambda t, alpha=1.0: F.celu(t, alpha),
    "softplus": lambda t, beta=1.0, threshold=20.0: F.softplus(t, beta, threshold),
    "silu": lambda t, beta=1.0: t * torch.sigmoid(beta * t),
    "gelu": lambda t, approximate="none": F.gelu(t, approximate=approximate),
    "mish": lambda t: F.mish(t),
    "hardswish": lambda t: F.hardswish(t),
    "sigmoid": torch.sigmoid,
    "log_sigmoid": lambda t: F.logsigmoid(t),
    "hardsigmoid": lambda t: F.hardsigmoid(t),
    "tanh": torch.tanh,
    "softsign": lambda t: F.softsign(t),
    "softshrink": lambda t, lambd=0.5: F.softshrink(t, lambd),
    "hardshrink": lambda t, lambd=0.5: F.hardshrink(t, lambd),
    "tanhshrink": lambda t: F.tanhshrink(t),
    "exponential": torch.exp,
    "identity": lambda t: t * 1.0,
}
#: Where PyTorch's float64 formula itself cancels (gelu's 1 + erf(x / sqrt 2) in the left
#: tail, tanhshrink's x - tanh(x) near 0), fastact (checked against mpmath elsewhere) is
#: compared within PyTorch's own error, an ULP of |x|.
LOOSE = {"gelu", "tanhshrink"}
#: Where autograd's second derivative at a kink is not PyTorch's convention for the first
#: (it differentiates the backward formula's pieces), compare off the kinks only.
SECOND_AT_KINKS = {"relu6", "hardtanh", "threshold", "hardswish", "hardsigmoid", "softshrink", "hardshrink",
                   "relu", "leaky_relu", "elu", "celu", "selu", "softsign"}

CASES = [(n, p) for n in fa.ELEMENTWISE if n in TORCH for p in param_sets(n)
         if not (n == "relu" and p)]  # relu's at_zero is fastact's own


def _torch_derivatives(name, x, params):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = TORCH[name](t, **params)
    (g,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    try:
        g2 = torch.autograd.grad(g.sum(), t, allow_unused=True)[0] if g.requires_grad else None
        g2 = torch.zeros_like(t) if g2 is None else g2.detach()
    except RuntimeError:  # "derivative for aten::hardsigmoid_backward is not implemented"
        g2 = None
    return y.detach().numpy(), g.detach().numpy(), None if g2 is None else g2.numpy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{params_id(c[1])}")
def test_matches_pytorch_float64(case, rng):
    name, params = case
    fn = fa.FUNCTIONS[name]
    spec = fa.REGISTRY[name]
    kinks = kink_points(spec, {**spec.kernel_defaults, **{k: p.encode(params.get(k, p.default))
                                                          for p in spec.params for k in [p.name]}})
    x = np.concatenate([rng.uniform(-8, 8, 3000), np.array(kinks, dtype=float), [0.0, -0.0, 30.0, -30.0]])
    y, g, g2 = _torch_derivatives(name, x, params)
    atol = 2e-16 * (1 + np.abs(x).max()) if name in LOOSE else 1e-300
    np.testing.assert_allclose(fn(x, **params), y, rtol=1e-13, atol=atol, err_msg=f"{name} f")
    # PyTorch's float64 hardsigmoid_backward multiplies by 1/6 rounded to float32.
    rtol = 1e-7 if name == "hardsigmoid" else 1e-12
    np.testing.assert_allclose(fn.grad(x, **params), g, rtol=rtol, atol=1e-13, err_msg=f"{name} f'")
    if g2 is not None:
        off = ~np.isin(x, kinks) if name in SECOND_AT_KINKS else np.ones(x.size, bool)
        np.testing.assert_allclose(fn.grad2(x, **params)[off], g2[off], rtol=1e-10, atol=1e-12, err_msg=f"{name} f''")
