"""MatConvNet-style option parsing shared by every block (cnnx._options)."""
import re

import numpy as np
import pytest

from cnnx import vl_nnprelu
from cnnx._options import Option, parse_options, split_derivative

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
    "args, kwargs, error, words",
    [
        (("Bogus", 1), {}, TypeError, "unknown option 'Bogus'"),
        ((), {"bogus": 1}, TypeError, "unknown option 'bogus'"),
        (("Pad",), {}, TypeError, "'Pad' needs a value"),
        ((3, 1), {}, TypeError, "option name"),
        (("pad", 1), {"pad": 2}, TypeError, "given twice"),
        ((), {"pad": -1}, ValueError, "Pad must be non-negative"),
        ((), {"pad": [1, 2]}, ValueError, "Pad must have 1 or 4 elements"),
        ((), {"pad": 1.5}, ValueError, "Pad must hold whole numbers"),
        ((), {"pad": "one"}, TypeError, "Pad must be numeric"),
        ((), {"stride": 0}, ValueError, "Stride must be at least 1"),
        ((), {"stride": [1, 2, 3]}, ValueError, "Stride must have 1 or 2 elements"),
        ((), {"method": "median"}, ValueError, "Method must be one of"),
        ((), {"leak": "x"}, TypeError, "Leak must be a real number"),
        ((), {"no_der_data": "yes"}, TypeError, "NoDerData must be true or false"),
    ],
)
def test_errors_name_the_option(args, kwargs, error, words):
    with pytest.raises(error, match=words):
        parse(*args, **kwargs)


def test_error_lists_valid_options():
    with pytest.raises(TypeError, match="Pad, Stride, Method, Leak, NoDerData"):
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
