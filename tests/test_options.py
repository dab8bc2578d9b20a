"""MatConvNet-style option parsing shared by every block (cnnx._options)."""
import math
import re

import numpy as np
import pytest

from cnnx import vl_nnprelu
from cnnx._options import Option, integer, limit, parse_options, real_number, split_derivative, truth_value
from cnnx.layers.base import flag, real


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"

SPEC = {
    "pad": Option("pad4", (0, 0, 0, 0)),
    "stride": Option("pair", (1, 1)),
    "method": Option("choice", "max", choices=("max", "avg")),
    "leak": Option("float", 0.0),
    "no_der_data": Option("flag", False),
}


def parse(*args, **kwargs):
    return parse_options("vl_test", args, kwargs, SPEC)


def test_defaults():
    assert parse() == {"pad": (0, 0, 0, 0), "stride": (1, 1), "method": "max", "leak": 0.0, "no_der_data": False}


def test_name_value_pairs_are_case_insensitive():
    opts = parse("PAD", [0, 1, 0, 1], "Stride", 2, "method", "AVG", "NoDerData")
    assert opts == {"pad": (0, 1, 0, 1), "stride": (2, 2), "method": "avg", "leak": 0.0, "no_der_data": True}


def test_keywords_and_pairs_mix():
    opts = parse("Leak", 0.1, pad=1, stride=[2, 3], no_der_data=True)
    assert opts["pad"] == (1, 1, 1, 1) and opts["stride"] == (2, 3) and opts["leak"] == 0.1
    assert opts["no_der_data"] is True


def test_numpy_values():
    assert parse(pad=np.array([1, 2, 3, 4]))["pad"] == (1, 2, 3, 4)
    assert parse(stride=np.float64(2.0))["stride"] == (2, 2)


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (("Bogus", 1), {}, TypeError,
         "vl_test: unknown option 'Bogus'. Valid options are: Pad, Stride, Method, Leak, NoDerData"),
        ((), {"bogus": 1}, TypeError,
         "vl_test: unknown option 'bogus'. Valid options are: Pad, Stride, Method, Leak, NoDerData"),
        (("Pad",), {}, TypeError, "vl_test: option 'Pad' needs a value"),
        ((3, 1), {}, TypeError,
         'vl_test: expected an option name (a string) at position 1 of the options, got int'),
        (("pad", 1), {"pad": 2}, TypeError, "vl_test: option 'Pad' is given twice"),
        ((), {"pad": -1}, ValueError, 'vl_test: Pad must be non-negative, got [-1, -1, -1, -1]'),
        ((), {"pad": [1, 2]}, ValueError, 'vl_test: Pad must have 1 or 4 elements [TOP BOTTOM LEFT RIGHT], got 2'),
        ((), {"pad": 1.5}, ValueError, 'vl_test: Pad must hold whole numbers, got 1.5'),
        ((), {"pad": "one"}, TypeError, "vl_test: Pad must be numeric, got 'one'"),
        ((), {"stride": 0}, ValueError, 'vl_test: Stride must be at least 1, got [0, 0]'),
        ((), {"stride": [1, 2, 3]}, ValueError, 'vl_test: Stride must have 1 or 2 elements [Y X], got 3'),
        ((), {"method": "median"}, ValueError, "vl_test: Method must be one of 'max', 'avg', got 'median'"),
        ((), {"leak": "x"}, TypeError, "vl_test: Leak must be a real number, got 'x'"),
        ((), {"no_der_data": "yes"}, TypeError, "vl_test: NoDerData must be true or false, got 'yes'"),
    ],
)
def test_errors_name_the_option(args, kwargs, error, message):
    with pytest.raises(error, match=exact(message)):
        parse(*args, **kwargs)


def test_error_lists_valid_options():
    with pytest.raises(TypeError, match=exact("vl_test: unknown option 'nope'. Valid options are: Pad, Stride, "
                                              "Method, Leak, NoDerData")):
        parse("nope", 1)


def test_split_derivative():
    dzdy = np.ones(3)
    der, rest = split_derivative((dzdy, "pad", 1), "vl_test")
    assert der is dzdy and rest == ("pad", 1)
    assert split_derivative(("pad", 1), "vl_test") == (None, ("pad", 1))
    assert split_derivative(([], "leak", 0.1), "vl_test") == (None, ("leak", 0.1))
    assert split_derivative((None,), "vl_test") == (None, ())
    assert split_derivative((), "vl_test") == (None, ())


def test_a_block_without_options_says_so():
    message = "vl_nnfoo: unknown option 'bogus'; vl_nnfoo takes no options"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        parse_options("vl_nnfoo", ("bogus", 1), {}, {})
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        parse_options("vl_nnfoo", (), {"bogus": 1}, {})
    message = "vl_nnprelu: unknown option 'Bogus'; vl_nnprelu takes no options"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        vl_nnprelu(np.ones((2, 2, 3)), np.ones(3), "Bogus", 1)


def test_bool_options_take_a_value_and_flag_rules():
    spec = {"keep": Option("bool", False), "flag": Option("flag", False)}
    assert parse_options("f", ("Keep", True, "Flag"), {}, spec) == {"keep": True, "flag": True}
    assert parse_options("f", ("keep", 0), {}, spec) == {"keep": False, "flag": False}
    with pytest.raises(ValueError, match=re.escape("f: Keep must be true or false (or 1 or 0), got 2")):
        parse_options("f", ("keep", 2), {}, spec)
    with pytest.raises(TypeError, match=re.escape("f: Keep must be true or false, got 'yes'")):
        parse_options("f", (), {"keep": "yes"}, spec)


@pytest.mark.parametrize("call, error, message", [
    (lambda: integer("f", "N", 0, low=1), ValueError, "f: N must be a positive integer, got 0"),
    (lambda: integer("f", "N", 2.5), ValueError, "f: N must hold whole numbers, got 2.5"),
    (lambda: integer("f", "N", "3"), TypeError, "f: N must be numeric, got '3'"),
    (lambda: integer("f", "N", 2, low=3), ValueError, "f: N must be an integer of at least 3, got 2"),
    (lambda: limit("f", "Depth", -math.inf), ValueError, "f: Depth must hold whole numbers, got -inf"),
    (lambda: real_number("f", "R", True), TypeError, "f: R must be a real number, got True"),
    (lambda: real_number("f", "R", 1.0, 0.0, 1.0, high_open=True), ValueError, "f: R must be in [0.0, 1.0), got 1.0"),
    (lambda: real_number("f", "R", -1, low=0.0), ValueError, "f: R must be at least 0.0, got -1.0"),
    (lambda: real_number("f", "R", math.nan, finite=True), ValueError, "f: R must be a finite real number, got nan"),
    (lambda: truth_value("f", "B", 1.0), TypeError, "f: B must be true or false, got 1.0"),
    (lambda: truth_value("f", "B", 0.5, doubles=True), ValueError, "f: B must be true or false (or 1 or 0), got 0.5"),
    (lambda: flag("Conv", "has_bias", np.array([0.5])), ValueError, "Conv: has_bias must be true or false, got [0.5]"),
    (lambda: real("ReLU", "leak", np.array(True)), TypeError, "ReLU: leak must be a finite number, got True"),
])
def test_one_rule_per_kind_of_value(call, error, message):
    """Blocks, DagNN properties, the trainer and the solvers read values by these rules."""
    with pytest.raises(error, match=exact(message)):
        call()


def test_rules_return_normalised_values():
    assert integer("f", "N", np.float64(3.0), low=1) == 3 and isinstance(integer("f", "N", 3.0), int)
    assert limit("f", "Depth", math.inf) == math.inf and limit("f", "Depth", 2) == 2
    assert real_number("f", "R", np.int64(2)) == 2.0 and truth_value("f", "B", np.bool_(True)) is True
    assert flag("Conv", "has_bias", np.array([[1.0]])) is True  # a MATLAB double, as model files store it
    assert truth_value("f", "B", 1.0, doubles=True) is True


def test_specs_built_per_call_parse_alike_and_stay_bounded():
    # parse_options caches each spec's lookup tables; a spec built anew per call must still be read
    # as itself (never through a stale table of an earlier spec with the same id), and the cache
    # must not grow with every such call.
    from cnnx import _options

    for i in range(3 * _options._SPEC_TABLES_MAX):
        name = f"opt_{i % 7}"
        spec = {name: Option("int", default=i)}
        assert parse_options("f", (), {}, spec) == {name: i}
        assert parse_options("f", (name.upper(), i + 1), {}, spec) == {name: i + 1}
        with pytest.raises(TypeError, match=f"Valid options are: {name.title().replace('_', '')}"):
            parse_options("f", ("other", 1), {}, spec)
    assert len(_options._SPEC_TABLES) <= _options._SPEC_TABLES_MAX


def test_a_spec_given_a_new_option_after_use_takes_it():
    spec = {"pad": Option("int", default=0)}
    assert parse_options("f", ("Pad", 2), {}, spec) == {"pad": 2}
    spec["stride"] = Option("int", default=1)
    assert parse_options("f", ("Stride", 3), {}, spec) == {"pad": 0, "stride": 3}
