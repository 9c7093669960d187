"""Every public docstring's examples run and give what they show."""

import doctest
import inspect
import pydoc

import pytest

import fastact as fa

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _run(doc, name):
    parser = doctest.DocTestParser()
    test = parser.get_doctest(doc or "", {}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
    return result.attempted


@pytest.mark.parametrize("name", list(fa.FUNCTIONS))
def test_function_docstring_examples(name):
    fn = fa.FUNCTIONS[name]
    assert fn.__doc__ and inspect.cleandoc(fa.REGISTRY[name].doc) in fn.__doc__
    assert _run(fn.__doc__, f"fastact.{name}") >= 1, f"fastact.{name} has no example"


def test_package_docstring_examples():
    assert _run(fa.__doc__, "fastact") >= 1


@pytest.mark.parametrize("method", ["grad", "grad2", "backward"])
def test_method_docstrings(method):
    for name in fa.ELEMENTWISE:
        assert getattr(fa.FUNCTIONS[name], method).__doc__
    _run(getattr(fa.FUNCTIONS[fa.ELEMENTWISE[0]], method).__doc__, method)


@pytest.mark.parametrize("name", ["config", "set_config", "release_memory", "memory_stats"])
def test_settings_and_memory_docstring_examples(name):
    try:
        assert _run(getattr(fa, name).__doc__, f"fastact.{name}") >= 1
    finally:
        fa.set_config(target="auto", memory_pool=1 << 30)


def test_a_failing_example_is_reported():
    with pytest.raises(AssertionError, match=r"1 of 2 examples failed"):
        _run(">>> import fastact as fa\n>>> float(fa.relu(-1.0))\n1.0\n", "bad")


@pytest.mark.parametrize("name", [n for n in fa.FUNCTIONS if n not in fa.WEIGHTED and not getattr(fa.REGISTRY[n], "sampled", "")])
def test_help_shows_the_call_signatures(name):
    fn = fa.FUNCTIONS[name]
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    params = "".join(f", {p.name}={p.default!r}" for p in fa.REGISTRY[name].params)
    axis = {"rowwise": "axis=-1, ", "gated": "axis=-1, ",
            "reduction": "axis, keepdims=False, "}.get(fa.REGISTRY[name].kind, "")
    dim = ", dim=None" if axis else ""
    assert f"{name}(x, /, *, {axis}out=None, target=None, stream=None{dim}{params})" in text
    acc = "" if axis else "accumulate=False, "
    xy = "x, " if name in fa.REDUCTIONS + fa.GATED else "x=None, y=None, "  # their gradients need x
    assert (f"{name}.backward(dy, /, *, {xy}{axis}out=None, {acc}target=None, stream=None{dim}{params})"
            in text)
    assert (f"{name}.grad(x, /" in text) == (name in fa.ELEMENTWISE)
    assert (f"{name}.grad2(x, /" in text) == (name in fa.ELEMENTWISE)
    sig = inspect.signature(fn)
    assert list(sig.parameters)[:2] == ["x", *(["axis"] if axis else ["out"])]
    assert sig.parameters["target"].default is None


@pytest.mark.parametrize("name", fa.WEIGHTED)
def test_help_shows_the_weighted_signatures(name):
    text = pydoc.render_doc(fa.FUNCTIONS[name], renderer=pydoc.plaintext)
    tail = "axis=1, out=None, target=None, stream=None, dim=None"
    assert f"{name}(x, weight, *, {tail})" in text
    assert f"{name}.grad(x, weight, *, {tail})" in text
    assert f"{name}.backward(dy, /, *, x, weight, {tail})" in text


def test_help_shows_the_training_mode():
    text = pydoc.render_doc(fa.rrelu, renderer=pydoc.plaintext)
    bounds = "lower=0.125, upper=0.3333333333333333"
    assert f"rrelu(x, /, *, out=None, target=None, stream=None, {bounds}, training=False, rng=None, slopes=None)" in text
    assert f"rrelu.grad(x, /, *, out=None, target=None, stream=None, {bounds}, slopes=None)" in text
    assert ("rrelu.backward(dy, /, *, x=None, y=None, out=None, accumulate=False, target=None, stream=None, "
            f"{bounds}, slopes=None)") in text
