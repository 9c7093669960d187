"""Train a two-layer network on scikit-learn's handwritten digits with fastact's layers.

    python examples/train_digits.py                     # fastact layers, ReLU
    python examples/train_digits.py --activation elu    # any fastact layer with a derivative
    python examples/train_digits.py --compare           # and the textbook NumPy layers, timed

The network is affine -> activation -> affine -> softmax with cross-entropy, trained by
minibatch SGD with momentum; the matrix products are plain NumPy.  The digits (8x8
images, 1797 of them) ship with scikit-learn, so nothing is downloaded.  ``--compare``
trains the same network from the same initial weights with the layers of the tutorials
fastact grew from (NumPy masks and ``np.exp``), and prints both times and the share of
each spent in the activation and loss layers.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import fastact as fa
from fastact import layers

# --- the network -----------------------------------------------------------------------------


class Affine:
    def __init__(self, w, b):
        self.w, self.b = w, b
        self.vw, self.vb = np.zeros_like(w), np.zeros_like(b)

    def forward(self, x):
        self.x = x
        return x @ self.w + self.b

    def backward(self, dout):
        self.dw = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.w.T

    def step(self, lr, momentum):
        self.vw *= momentum
        self.vw -= lr * self.dw
        self.vb *= momentum
        self.vb -= lr * self.db
        self.w += self.vw
        self.b += self.vb


class Timed:
    """A layer whose forward and backward time is added to a shared counter."""

    def __init__(self, layer, clock):
        self.layer, self.clock = layer, clock

    def forward(self, *args):
        t = time.perf_counter()
        r = self.layer.forward(*args)
        self.clock[0] += time.perf_counter() - t
        return r

    def backward(self, *args):
        t = time.perf_counter()
        r = self.layer.backward(*args)
        self.clock[0] += time.perf_counter() - t
        return r


def init_weights(rng, sizes, dtype):
    """He initialisation, the same for both implementations."""
    ws = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        ws.append(((rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype),
                   np.zeros(fan_out, dtype)))
    return ws


def train(make_activation, make_loss, data, *, hidden, epochs, batch, lr, momentum, seed, dtype):
    x_train, y_train, x_test, y_test = data
    rng = np.random.default_rng(seed)
    (w1, b1), (w2, b2) = init_weights(rng, [x_train.shape[1], hidden, 10], dtype)
    clock = [0.0]
    fc1, fc2 = Affine(w1, b1), Affine(w2, b2)
    act = Timed(make_activation(), clock)
    loss = Timed(make_loss(), clock)
    order = np.random.default_rng(seed + 1)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = order.permutation(len(x_train))
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            h = act.forward(fc1.forward(x_train[idx]))
            loss.forward(fc2.forward(h), y_train[idx])
            fc1.backward(act.backward(fc2.backward(loss.backward())))
            fc1.step(lr, momentum)
            fc2.step(lr, momentum)
    elapsed = time.perf_counter() - start
    logits = fc2.forward(act.layer.forward(fc1.forward(x_test)))
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y_test))
    return accuracy, elapsed, clock[0]


# --- the textbook layers, for --compare --------------------------------------------------------


class NumpyReLU:
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout = dout.copy()
        dout[self.mask] = 0
        return dout


class NumpyLeakyReLU:
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] *= 0.01
        return out

    def backward(self, dout):
        return np.where(self.mask, 0.01 * dout, dout)


class NumpyELU:
    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, np.exp(x) - 1)

    def backward(self, dout):
        return dout * np.where(self.x > 0, 1.0, np.exp(self.x))


class NumpySigmoid:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class NumpySoftmaxWithLoss:
    """The tutorials' output layer: softmax with the row maximum, then cross-entropy."""

    def forward(self, x, t):
        self.t = t
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y = e / e.sum(axis=1, keepdims=True)
        n = x.shape[0]
        return -np.sum(np.log(self.y[np.arange(n), t] + 1e-7)) / n

    def backward(self, dout=1):
        n = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx * dout / n


NUMPY_LAYERS = {"relu": NumpyReLU, "leaky_relu": NumpyLeakyReLU, "elu": NumpyELU, "sigmoid": NumpySigmoid}


# --- main -------------------------------------------------------------------------------------


def load(dtype):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(dtype)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=0,
                                                        stratify=digits.target)
    return x_train, y_train, x_test, y_test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation", default="relu", choices=sorted(NUMPY_LAYERS),
                        help="the hidden layer's activation (default relu)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default=None, choices=list(fa.TARGETS), help="fastact's target (default: auto)")
    parser.add_argument("--compare", action="store_true", help="also train with the textbook NumPy layers")
    parser.add_argument("--check", type=float, metavar="ACCURACY",
                        help="exit with status 1 if fastact's test accuracy is below this (e.g. 0.95)")
    args = parser.parse_args(argv)

    dtype = np.dtype(args.dtype)
    data = load(dtype)
    settings = dict(hidden=args.hidden, epochs=args.epochs, batch=args.batch, lr=args.lr, momentum=args.momentum,
                    seed=args.seed, dtype=dtype)
    fastact_layer = getattr(layers, fa.REGISTRY[args.activation].layer)
    runs = {"fastact": (lambda: fastact_layer(target=args.target), lambda: layers.SoftmaxCrossEntropy(target=args.target))}
    if args.compare:
        runs["NumPy (textbook)"] = (NUMPY_LAYERS[args.activation], NumpySoftmaxWithLoss)
    print(f"digits: {len(data[0])} training and {len(data[2])} test images; 64 -> {args.hidden} "
          f"({args.activation}) -> 10, {args.epochs} epochs of batches of {args.batch}, {args.dtype}")
    results = {}
    for label, (act, loss) in runs.items():
        train(act, loss, data, **{**settings, "epochs": 1})  # warm-up: compilation, caches
        accuracy, elapsed, in_layers = train(act, loss, data, **settings)
        results[label] = accuracy
        print(f"{label:>18}: test accuracy {accuracy:.1%} in {elapsed:.2f} s; activation and loss layers "
              f"{in_layers:.3f} s ({in_layers / elapsed:.0%} of the time)")
    if args.check is not None and results["fastact"] < args.check:
        print(f"test accuracy {results['fastact']:.1%} is below {args.check:.1%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
