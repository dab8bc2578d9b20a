"""Every block, every option: values that cannot be represented (huge integers, NaN, inf, fractions
where an integer is expected, ...) and zero-size arrays give a ValueError or TypeError naming the
function and the argument and saying what was expected, raised in Python before any kernel runs.

Where a zero-size input has an obvious result (no images, an elementwise block on an empty array,
a loss summed over no pixels, a concatenation with an empty part) the block returns it instead;
those results are checked at the end.
"""
import re

import numpy as np
import pytest

import cnnx.activations
import cnnx.bilinearsampler
import cnnx.bnorm
import cnnx.conv
import cnnx.dropout
import cnnx.softmaxloss
import cnnx.pdist
import cnnx.pool
import cnnx.normalize
import cnnx.softmax
import cnnx.roipool
from cnnx import (vl_nnbilinearsampler, vl_nnbnorm, vl_nnclippedrelu, vl_nnconv, vl_nndropout, vl_nnelu, vl_nngelu,
                  vl_nnpool, vl_nnprelu, vl_nnrelu, vl_nnroipool, vl_nnselu, vl_nnsilu, vl_nnsoftmaxloss, vl_nnsoftplus,
                  vl_nntanh)
from cnnx.concat import vl_nnconcat
from cnnx.convt import vl_nnconvt
from cnnx.crop import vl_nncrop
from cnnx.nnloss import vl_nnloss
from cnnx.normalize import vl_nnnoffset, vl_nnnormalize, vl_nnnormalizelp, vl_nnspnorm
from cnnx.pdist import vl_nnpdist
from cnnx.softmax import vl_nnsigmoid, vl_nnsoftmax

NAN, INF = float("nan"), float("inf")
# The elementwise activations beyond MatConvNet: (function, its name)
ACTIVATIONS = [(vl_nnelu, "vl_nnelu"), (vl_nnselu, "vl_nnselu"), (vl_nnsoftplus, "vl_nnsoftplus"),
               (vl_nntanh, "vl_nntanh"), (vl_nnsilu, "vl_nnsilu"), (vl_nngelu, "vl_nngelu"),
               (vl_nnclippedrelu, "vl_nnclippedrelu")]


def zeros(*shape):
    return np.zeros(shape, np.float32, order="F")


X = zeros(5, 5, 4, 2)
F = zeros(3, 3, 4, 6)
B = zeros(6)
DY = zeros(3, 3, 6, 2)  # vl_nnconv(X, F, B)'s shape
PY = zeros(3, 3, 4, 2)  # vl_nnpool(X, 3)'s shape
MASK = np.full(X.shape, 2, np.float32)


class _NoKernel:
    """Stands in for a kernel module: any call fails the test."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        raise AssertionError(f"the {self.name} kernel ({attr}) ran before the error was raised")


@pytest.fixture
def no_kernels(monkeypatch):
    """Errors must come from Python, before any kernel is entered."""
    monkeypatch.setattr(cnnx.conv, "_kernel", _NoKernel("conv"))
    monkeypatch.setattr(cnnx.pool, "_kernel", _NoKernel("pool"))
    monkeypatch.setattr(cnnx.activations, "_kernels", _NoKernel("activations"))
    monkeypatch.setattr(cnnx.bnorm, "_kernels", _NoKernel("bnorm"))
    monkeypatch.setattr(cnnx.bilinearsampler, "_kernels", _NoKernel("bilinearsampler"))
    monkeypatch.setattr(cnnx.roipool, "_kernel", _NoKernel("roipool"))
    monkeypatch.setattr(cnnx.dropout, "_kernels", _NoKernel("dropout"))
    monkeypatch.setattr(cnnx.softmaxloss, "_kernels", _NoKernel("softmaxloss"))
    monkeypatch.setattr(cnnx.softmax, "_kernels", _NoKernel("softmax"))
    monkeypatch.setattr(cnnx.normalize, "_kernels", _NoKernel("normalize"))
    monkeypatch.setattr(cnnx.pdist, "_kernels", _NoKernel("pdist"))


CASES = []


def case(ident, call, error, message):
    CASES.append(pytest.param(call, error, message, id=ident))


# ------------------------------------------------------------------------------------------------
# Integer options: vl_nnconv's Pad, Stride, Dilate; vl_nnpool's Pad, Stride and POOL
# ------------------------------------------------------------------------------------------------

def integer_values(label, kind):
    """(value, error, message after 'fname: ') for an option of kind 'pad4' or 'pair'."""
    n = 4 if kind == "pad4" else 2
    lower = "must be non-negative" if kind == "pad4" else "must be at least 1"
    shape = "[TOP BOTTOM LEFT RIGHT]" if kind == "pad4" else "[Y X]"
    huge_list = [0, 0, 0, 2**63] if kind == "pad4" else [1, 2**63]
    too_big = [2**63, 2**64, np.uint64(2**63), 2**62, 1e300, huge_list, np.array(huge_list)]
    out = [(v, ValueError, f"{label} must be less than 2^62, got {v!r}") for v in too_big]
    out += [(v, ValueError, f"{label} must hold whole numbers, got {v!r}")
            for v in (NAN, INF, -INF, 1.5, np.float32(2.5), [1, NAN] * (n // 2))]
    out += [
        (-2**63, ValueError, f"{label} {lower}, got {[-2**63] * n}"),
        (-2**64, ValueError, f"{label} {lower}, got {[-2**64] * n}"),
        ("2", TypeError, f"{label} must be numeric, got '2'"),
        ([1, "2"], TypeError, f"{label} must be numeric, got [1, '2']"),
        ([[1, 2], [3]], TypeError, f"{label} must be numeric, got [[1, 2], [3]]"),
        (None, TypeError, f"{label} must be numeric, got None"),
        ([True, False], TypeError, f"{label} must be numeric, got [True, False]"),
        ([], ValueError, f"{label} must have 1 or {n} elements {shape}, got 0"),
        (np.zeros((0, 2)), ValueError, f"{label} must have 1 or {n} elements {shape}, got 0"),
        ([1, 1, 1], ValueError, f"{label} must have 1 or {n} elements {shape}, got 3"),
    ]
    return out


for option, label, kind in (("pad", "Pad", "pad4"), ("stride", "Stride", "pair"), ("dilate", "Dilate", "pair")):
    for i, (value, error, message) in enumerate(integer_values(label, kind)):
        case(f"conv-{option}-{i}-forward", lambda v=value, o=option: vl_nnconv(X, F, B, **{o: v}),
             error, f"vl_nnconv: {message}")
        case(f"conv-{option}-{i}-backward", lambda v=value, lab=label: vl_nnconv(X, F, B, DY, lab, v),
             error, f"vl_nnconv: {message}")
for option, label, kind in (("pad", "Pad", "pad4"), ("stride", "Stride", "pair")):
    for i, (value, error, message) in enumerate(integer_values(label, kind)):
        case(f"pool-{option}-{i}-forward", lambda v=value, o=option: vl_nnpool(X, 3, **{o: v}),
             error, f"vl_nnpool: {message}")
        case(f"pool-{option}-{i}-backward", lambda v=value, lab=label: vl_nnpool(X, 3, PY, lab, v),
             error, f"vl_nnpool: {message}")
for i, (value, error, message) in enumerate(integer_values("POOL", "pair")):
    case(f"pool-POOL-{i}-forward", lambda v=value: vl_nnpool(X, v), error, f"vl_nnpool: {message}")
    case(f"pool-POOL-{i}-backward", lambda v=value: vl_nnpool(X, v, PY), error, f"vl_nnpool: {message}")

# Values that fit the options but not the problem: 2^31 where the kernels need 32-bit sizes, padded
# sizes beyond the 64-bit indices, and filters dilated beyond the input.
case("conv-pad-2^31-blas", lambda: vl_nnconv(X, F, B, pad=[2**31, 2**31, 0, 0]), ValueError,
     f"vl_nnconv: the im2row matrix has a dimension of {3 * (2**32 + 3)}, more than BLAS can take (2^31 - 1)")
case("conv-pad-2^31-elements", lambda: vl_nnconv(X, F, B, pad=2**31), ValueError,
     f"vl_nnconv: Y would have {(2**32 + 3) ** 2 * 12} elements, more than can be indexed")
case("conv-padded-beyond-2^62",
     lambda: vl_nnconv(X, F, B, pad=[2**62 - 1, 2**62 - 1, 0, 0], stride=2**62 - 1), ValueError,
     f"vl_nnconv: X with padding is {5 + 2**63 - 2} x 5; each must be less than 2^62")
case("conv-dilate-2^31", lambda: vl_nnconv(X, F, B, dilate=2**31), ValueError,
     f"vl_nnconv: F ({2**32 + 1} x {2**32 + 1} with dilation) is larger than X (5 x 5 including padding)")
case("pool-POOL-2^31", lambda: vl_nnpool(X, 2**31), ValueError,
     "vl_nnpool: POOL [2147483648, 2147483648] is too large (at most 2147483646)")
case("pool-pad-2^31", lambda: vl_nnpool(X, 3, pad=2**31), ValueError,
     "vl_nnpool: Pad [2147483648, 2147483648, 2147483648, 2147483648] must be smaller than POOL [3, 3] "
     "(top and bottom below PH, left and right below PW)")

# ------------------------------------------------------------------------------------------------
# Flags, choices and other options
# ------------------------------------------------------------------------------------------------

for option, label in (("no_der_data", "NoDerData"), ("no_der_filters", "NoDerFilters"),
                      ("no_der_biases", "NoDerBiases")):
    for value in (2, -1, 2**63, np.int64(7)):
        case(f"conv-{option}-{value!r}", lambda v=value, o=option: vl_nnconv(X, F, B, DY, **{o: v}),
             ValueError, f"vl_nnconv: {label} must be true or false (or 1 or 0), got {value!r}")
    for value in (NAN, 1.5, 1.0, "yes", None, [True]):
        case(f"conv-{option}-{value!r}", lambda v=value, o=option: vl_nnconv(X, F, B, DY, **{o: v}),
             TypeError, f"vl_nnconv: {label} must be true or false, got {value!r}")

for value in ("median", 2, None, NAN):
    case(f"pool-method-{value!r}", lambda v=value: vl_nnpool(X, 3, method=v), ValueError,
         f"vl_nnpool: Method must be one of 'max', 'avg', got {value!r}")

for value in (NAN, INF, -INF, -0.5, 2.0**52 * 2, 1e300, 2**63, -2**63):
    shown = float(value)
    case(f"relu-leak-{value!r}", lambda v=value: vl_nnrelu(X, leak=v), ValueError,
         f"vl_nnrelu: Leak must be a number from 0 to 2^52, got {shown!r}")
    case(f"relu-leak-{value!r}-backward", lambda v=value: vl_nnrelu(X, X, "Leak", v), ValueError,
         f"vl_nnrelu: Leak must be a number from 0 to 2^52, got {shown!r}")
for value in (2**1024, -2**1024):
    case(f"relu-leak-{value // 2**1000}*2^1000", lambda v=value: vl_nnrelu(X, leak=v), ValueError,
         f"vl_nnrelu: Leak must be a finite real number, got {value!r}")
for value in ("0.1", [0.1, 0.2], None, b"1"):
    case(f"relu-leak-{value!r}", lambda v=value: vl_nnrelu(X, leak=v), TypeError,
         f"vl_nnrelu: Leak must be a real number, got {value!r}")

# vl_nnelu's Alpha, vl_nngelu's Approximate, vl_nnclippedrelu's Ceiling; the activations without options
for value in (NAN, INF, -INF):
    case(f"elu-alpha-{value!r}", lambda v=value: vl_nnelu(X, alpha=v), ValueError,
         f"vl_nnelu: Alpha must be a finite real number, got {value!r}")
    case(f"elu-alpha-{value!r}-backward", lambda v=value: vl_nnelu(X, X, "ALPHA", v), ValueError,
         f"vl_nnelu: Alpha must be a finite real number, got {value!r}")
for value in (2**1024, -2**1024):
    case(f"elu-alpha-{value // 2**1000}*2^1000", lambda v=value: vl_nnelu(X, alpha=v), ValueError,
         f"vl_nnelu: Alpha must be a finite real number, got {value!r}")
for value in ("1", [0.1, 0.2], None, True, b"1"):
    case(f"elu-alpha-{value!r}", lambda v=value: vl_nnelu(X, alpha=v), TypeError,
         f"vl_nnelu: Alpha must be a real number, got {value!r}")
case("elu-unknown-option", lambda: vl_nnelu(X, "Leak", 0.1), TypeError,
     "vl_nnelu: unknown option 'Leak'. Valid options are: Alpha")
for value in ("erf", "", 2, None, NAN, ["tanh"]):
    case(f"gelu-approximate-{value!r}", lambda v=value: vl_nngelu(X, approximate=v), ValueError,
         f"vl_nngelu: Approximate must be one of 'none', 'tanh', got {value!r}")
    case(f"gelu-approximate-{value!r}-backward", lambda v=value: vl_nngelu(X, X, "Approximate", v), ValueError,
         f"vl_nngelu: Approximate must be one of 'none', 'tanh', got {value!r}")
case("gelu-approximate-no-value", lambda: vl_nngelu(X, "Approximate"), TypeError,
     "vl_nngelu: option 'Approximate' needs a value")
for value in (NAN, -INF, -0.5, -2**63, -1e300):
    case(f"clippedrelu-ceiling-{value!r}", lambda v=value: vl_nnclippedrelu(X, ceiling=v), ValueError,
         f"vl_nnclippedrelu: Ceiling must be at least 0.0, got {float(value)!r}")
    case(f"clippedrelu-ceiling-{value!r}-backward", lambda v=value: vl_nnclippedrelu(X, X, "ceiling", v),
         ValueError, f"vl_nnclippedrelu: Ceiling must be at least 0.0, got {float(value)!r}")
case("clippedrelu-ceiling-2^1024", lambda: vl_nnclippedrelu(X, ceiling=2**1024), ValueError,
     f"vl_nnclippedrelu: Ceiling must be a finite real number, got {2**1024!r}")
for value in ("6", None, False):
    case(f"clippedrelu-ceiling-{value!r}", lambda v=value: vl_nnclippedrelu(X, ceiling=v), TypeError,
         f"vl_nnclippedrelu: Ceiling must be a real number, got {value!r}")
for fn, fname in ACTIVATIONS[1:5]:
    case(f"{fname}-no-options", lambda fn=fn: fn(X, "Alpha", 1.0), TypeError,
         f"{fname}: unknown option 'Alpha'; {fname} takes no options")
    case(f"{fname}-no-options-backward", lambda fn=fn: fn(X, X, alpha=1.0), TypeError,
         f"{fname}: unknown option 'alpha'; {fname} takes no options")
for fn, fname in ACTIVATIONS:
    case(f"{fname}-x-int", lambda fn=fn: fn(np.zeros(3, np.int64)), TypeError,
         f"{fname}: X must be a float32 or float64 array, got an integer array (int64)")
    case(f"{fname}-x-float16", lambda fn=fn: fn(np.zeros(3, np.float16), X), TypeError,
         f"{fname}: X must be a float32 or float64 array, got a float16 array (float16)")
    case(f"{fname}-dzdy-float64", lambda fn=fn: fn(X, np.zeros(X.shape)), TypeError,
         f"{fname}: DZDY is float64 but X is float32; all arrays must share one dtype")
    case(f"{fname}-dzdy-string-keyword", lambda fn=fn: fn(X, dzdy="alpha"), TypeError,
         f"{fname}: DZDY must be an array, got the string 'alpha'")

for value in (NAN, INF, -INF, -0.5, 1.0, 1, 2**63, -2**63, 1e300):
    shown = float(value)
    case(f"dropout-rate-{value!r}", lambda v=value: vl_nndropout(X, rate=v), ValueError,
         f"vl_nndropout: Rate must be in [0, 1), got {shown!r}")
case("dropout-rate-2^1024", lambda: vl_nndropout(X, "rate", 2**1024), ValueError,
     f"vl_nndropout: Rate must be a finite real number, got {2**1024!r}")
case("dropout-rate-str", lambda: vl_nndropout(X, rate="0.5"), TypeError,
     "vl_nndropout: Rate must be a real number, got '0.5'")
case("dropout-rate-True", lambda: vl_nndropout(X, rate=True), TypeError,
     "vl_nndropout: Rate must be a real number, got True")
for value in (2**64, -1, -2**63, 2**100):
    case(f"dropout-seed-{value!r}", lambda v=value: vl_nndropout(X, seed=v), ValueError,
         f"vl_nndropout: Seed must be in [0, 2^64), got {value}")
for value in (1.5, NAN, INF, True, np.bool_(False), "1", 1.0):
    case(f"dropout-seed-{value!r}", lambda v=value: vl_nndropout(X, seed=v), TypeError,
         f"vl_nndropout: Seed must be an integer, got {value!r}")

for value in (2**63, -2**63, 2**64, NAN, INF, -INF, 1.5, 0, 5, 1e300):
    case(f"concat-dim-{value!r}", lambda v=value: vl_nnconcat([X, X], v), ValueError,
         f"vl_nnconcat: DIM must be an integer from 1 to 4, got {value!r}")
for value in (True, "3", None, [3]):
    case(f"concat-dim-{value!r}", lambda v=value: vl_nnconcat([X, X], v), TypeError,
         f"vl_nnconcat: DIM must be an integer from 1 to 4, got {value!r}")
for value in (INF, NAN, -1, 1.5, -2**63, 2**64, "2"):
    sizes = [[5, 5, 4, value], [5, 5, 4, 2]]
    case(f"concat-input-sizes-{value!r}",
         lambda s=sizes: vl_nnconcat(None, 3, zeros(5, 5, 8, 2), "InputSizes", s), ValueError,
         f"vl_nnconcat: InputSizes[0] must be a list of non-negative integers, got {sizes[0]!r}")
case("concat-input-sizes-ragged", lambda: vl_nnconcat(None, 3, zeros(5, 5, 8, 2), input_sizes=[[5, [5], 4, 2]]),
     ValueError, "vl_nnconcat: InputSizes[0] must be a list of non-negative integers, got [5, [5], 4, 2]")

LOSS_CHOICES = ("'softmaxlog', 'log', 'mhinge', 'mshinge', 'classerror', 'topkerror', 'binaryerror', 'binarylog', "
                "'logistic', 'hinge', 'l2'")
for value in (3, None, NAN, "squared"):
    case(f"nnloss-loss-{value!r}", lambda v=value: vl_nnloss(X, [1, 2], loss=v), ValueError,
         f"vl_nnloss: Loss must be one of {LOSS_CHOICES}, got {value!r}")
for value, message in ((0, "TopK must be a positive integer, got 0"), (1.5, "TopK must hold whole numbers, got 1.5"),
                       (2**62, "TopK must be less than 2^62, got 4611686018427387904")):
    case(f"nnloss-topk-{value!r}", lambda v=value: vl_nnloss(X, [1, 2], "loss", "topkerror", "TopK", v), ValueError,
         f"vl_nnloss: {message}")
for value, error, message in ((NAN, ValueError, "Threshold must be a finite real number, got nan"),
                              ("a", TypeError, "Threshold must be a real number, got 'a'")):
    case(f"nnloss-threshold-{value!r}", lambda v=value: vl_nnloss(X, np.ones(X.shape), loss="binaryerror", threshold=v),
         error, f"vl_nnloss: {message}")
BINARY_SHAPES = ("but X is 5 x 5 x 4 x 2; give an H x W x D x N array (one label per score), or N labels (one per "
                 "image) when D = 1")
for loss in ("binaryerror", "binarylog", "logistic", "hinge", "l2"):
    case(f"nnloss-{loss}-per-pixel-labels", lambda v=loss: vl_nnloss(X, np.ones((5, 5, 1, 2)), loss=v), ValueError,
         f"vl_nnloss: labels C have shape (5, 5, 1, 2) {BINARY_SHAPES}")
    case(f"nnloss-{loss}-per-image-labels", lambda v=loss: vl_nnloss(X, [1, 1], loss=v), ValueError,
         f"vl_nnloss: labels C have shape (2,) {BINARY_SHAPES}")
    case(f"nnloss-{loss}-weights", lambda v=loss: vl_nnloss(X, np.ones(X.shape), loss=v, instance_weights=np.ones(3)),
         ValueError, "vl_nnloss: InstanceWeights is a vector of 3 values; give N = 2 (one per image) or an array "
         "broadcastable to H x W x D x N")
    case(f"nnloss-{loss}-weights-shape",
         lambda v=loss: vl_nnloss(X, np.ones(X.shape), loss=v, instance_weights=np.ones((5, 5, 3))), ValueError,
         "vl_nnloss: InstanceWeights of shape (5, 5, 3) does not broadcast to the instances 5 x 5 x 4 x 2")
for loss in ("binaryerror", "binarylog", "logistic", "hinge"):
    for value, shown in ((2, "2"), (0.5, "0.5"), (NAN, "nan"), (-INF, "-inf")):
        labels = np.ones(X.shape)
        labels[1, 2, 3, 1] = value
        case(f"nnloss-{loss}-label-{shown}", lambda v=loss, c=labels: vl_nnloss(X, c, loss=v), ValueError,
             f"vl_nnloss: labels C of Loss '{loss}' must be +1 or -1 (0 ignores an instance), got {shown}")
for fn, fname in ((vl_nnsoftmaxloss, "vl_nnsoftmaxloss"), (vl_nnloss, "vl_nnloss")):
    for value in (np.array([2**64, 1], dtype=object), np.array(["a", "b"]), np.array([True, False])):
        case(f"{fname}-weights-{value.dtype}", lambda v=value, fn=fn: fn(X, [1, 2], instance_weights=v),
             TypeError, f"{fname}: InstanceWeights must be numeric, got a {value.dtype} array")

LABEL_CASES = []
LABEL_VALUES = ("labels C must be whole numbers of at most 4 (1..C are the C = 4 classes, 0 or less ignores an "
                "instance), got ")
for ident, c, shown in [
    ("2^63", [1, 2**63], "9223372036854775808"),
    ("uint64", np.array([1, 2**63], np.uint64), "9223372036854775808"),
    ("2^64", [1, 2**64], "18446744073709551616"),
    ("2^100", [-2**101, 2**100], "1267650600228229401496703205376"),
    ("nan", [1, NAN], "nan"),
    ("inf", [1, INF], "inf"),
    ("-inf", [1, -INF], "-inf"),
    ("1.5", [1, 1.5], "1.5"),
    ("-1.5", [1, -1.5], "-1.5"),
    ("5", [1, 5], "5"),
    ("5.0", np.array([1.0, 5.0]), "5"),
]:
    # One label parser (cnnx._labels) for both blocks; vl_nnsoftmaxloss checks label values in
    # its kernel, on the way (the kernel writes nothing the caller sees before the error); a
    # label too large for any integer type is refused before.
    LABEL_CASES.append(pytest.param(lambda c=c: vl_nnsoftmaxloss(X, c),
                                    "vl_nnsoftmaxloss: " + LABEL_VALUES + shown, id=f"softmaxloss-{ident}"))
    LABEL_CASES.append(pytest.param(lambda c=c: vl_nnsoftmaxloss(X, c, 1.0),
                                    "vl_nnsoftmaxloss: " + LABEL_VALUES + shown, id=f"softmaxloss-{ident}-backward"))
    case(f"nnloss-label-{ident}", lambda c=c: vl_nnloss(X, c), ValueError, "vl_nnloss: " + LABEL_VALUES + shown)
case("softmaxloss-dzdy-2^1024", lambda: vl_nnsoftmaxloss(X, [1, 2], 2**1024), ValueError,
     f"vl_nnsoftmaxloss: DZDY must be a finite number, got {2**1024!r}")

for fn, fname in ((vl_nnprelu, "vl_nnprelu"),):
    case(f"{fname}-no-options", lambda fn=fn: fn(X, zeros(4), "Leak", 0.1), TypeError,
         f"{fname}: unknown option 'Leak'; {fname} takes no options")

X0 = zeros(1, 1, 4, 2)
for ident, call, error, message in [
    ("x0-channels", lambda: vl_nnpdist(X, zeros(5, 5, 3, 2), 2), ValueError,
     "X0 has shape (5, 5, 3, 2) but X is 5 x 5 x 4 x 2; give X0 of X's shape or 1 x 1 x 4 x 2"),
    ("x0-rows", lambda: vl_nnpdist(X, zeros(1, 5, 4, 2), 2), ValueError,
     "X0 has shape (1, 5, 4, 2) but X is 5 x 5 x 4 x 2; give X0 of X's shape or 1 x 1 x 4 x 2"),
    ("x0-dtype", lambda: vl_nnpdist(X, X0.astype(np.float64), 2), TypeError,
     "X0 is float64 but X is float32; all arrays must share one dtype"),
    ("x-int", lambda: vl_nnpdist(X.astype(np.int64), X0, 2), TypeError,
     "X must be a float32 or float64 array, got an integer array (int64)"),
    ("x-1d", lambda: vl_nnpdist(zeros(5), X0, 2), ValueError,
     "X must have 2 to 4 dimensions (H x W x C x N), got 1 ((5,))"),
    ("p-0", lambda: vl_nnpdist(X, X0, 0), ValueError, "P must be greater than 0, got 0.0"),
    ("p--1", lambda: vl_nnpdist(X, X0, -1), ValueError, "P must be greater than 0, got -1.0"),
    ("p-nan", lambda: vl_nnpdist(X, X0, NAN), ValueError, "P must be a finite real number, got nan"),
    ("p-inf", lambda: vl_nnpdist(X, X0, INF), ValueError, "P must be a finite real number, got inf"),
    ("p-string", lambda: vl_nnpdist(X, X0, "a"), TypeError, "P must be a real number, got 'a'"),
    ("p-vector", lambda: vl_nnpdist(X, X0, [1, 2]), TypeError, "P must be a real number, got [1, 2]"),
    ("epsilon", lambda: vl_nnpdist(X, X0, 2, "Epsilon", -1), ValueError, "Epsilon must be at least 0, got -1.0"),
    ("epsilon-nan", lambda: vl_nnpdist(X, X0, 2, epsilon=NAN), ValueError,
     "Epsilon must be a finite real number, got nan"),
    ("noroot", lambda: vl_nnpdist(X, X0, 2, "NoRoot", 2), ValueError,
     "NoRoot must be true or false (or 1 or 0), got 2"),
    ("dzdy-shape", lambda: vl_nnpdist(X, X0, 2, zeros(5, 5, 2, 2)), ValueError,
     "DZDY has shape (5, 5, 2, 2) but Y is 5 x 5 x 1 x 2; give one number or an array of Y's shape"),
    ("dzdy-dtype", lambda: vl_nnpdist(X, X0, 2, np.ones((5, 5, 1, 2))), TypeError,
     "DZDY is float64 but X is float32; all arrays must share one dtype"),
    ("weights", lambda: vl_nnpdist(X, X0, 2, "instanceWeights", np.ones(3)), ValueError,
     "InstanceWeights is a vector of 3 values; give N = 2 (one per image) or an array broadcastable to H x W x 1 x N"),
    ("option", lambda: vl_nnpdist(X, X0, 2, "normalise", 1), TypeError,
     "unknown option 'normalise'. Valid options are: NoRoot, Epsilon, Aggregate, InstanceWeights"),
]:
    case(f"pdist-{ident}", call, error, "vl_nnpdist: " + message)

# ------------------------------------------------------------------------------------------------
# Zero-size dimensions
# ------------------------------------------------------------------------------------------------

for shape in ((0, 5, 4, 2), (5, 0, 4, 2), (5, 5, 0, 2), (0, 0), (5, 0), (0, 5, 4)):
    for f, fid in ((F, "F"), (None, "identity")):
        case(f"conv-x{shape}-{fid}", lambda s=shape, f=f: vl_nnconv(zeros(*s), f, None, pad=2), ValueError,
             f"vl_nnconv: X has shape {shape}; H, W and C must be at least 1 (only N may be 0)")
    case(f"conv-x{shape}-backward", lambda s=shape: vl_nnconv(zeros(*s), F, B, DY), ValueError,
         f"vl_nnconv: X has shape {shape}; H, W and C must be at least 1 (only N may be 0)")
# The fuzzer's case: no channels in X and F; the biases are not to blame.
case("conv-no-channels", lambda: vl_nnconv(X[:, :, :0], F[:, :, :0], B), ValueError,
     "vl_nnconv: X has shape (5, 5, 0, 2); H, W and C must be at least 1 (only N may be 0)")
for shape in ((0, 3, 4, 6), (3, 0, 4, 6), (3, 3, 0, 6), (3, 3, 4, 0), (0, 3), (3, 0), (1, 0, 4), (0, 0, 0, 0)):
    for b, bid in ((B, "B"), (None, "no-B")):
        case(f"conv-f{shape}-{bid}", lambda s=shape, b=b: vl_nnconv(X, zeros(*s), b), ValueError,
             f"vl_nnconv: F has shape {shape}; FH, FW, FC and K must be at least 1 "
             "(None or [] is the identity filter bank)")
    case(f"conv-f{shape}-backward", lambda s=shape: vl_nnconv(X, zeros(*s), B, DY), ValueError,
         f"vl_nnconv: F has shape {shape}; FH, FW, FC and K must be at least 1 "
         "(None or [] is the identity filter bank)")
for shape in ((6, 0), (1, 0), (0, 6), (0, 0, 0)):
    case(f"conv-b{shape}", lambda s=shape: vl_nnconv(X, F, zeros(*s)), ValueError,
         "vl_nnconv: B has 0 elements but there are 6 filters (None or [] for no biases)")
case("conv-b-identity", lambda: vl_nnconv(X, None, B), ValueError,
     "vl_nnconv: B has 6 elements but the identity filter bank (F empty) has C = 4 filters")
for shape in ((0,), (0, 0), (3, 3, 6, 0), (0, 3, 6, 2)):
    message = (f"vl_nnconv: DZDY must have 2 to 4 dimensions (H x W x C x N), got 1 ({shape})"
               if len(shape) == 1 else f"vl_nnconv: DZDY has shape {shape} but Y has shape (3, 3, 6, 2)")
    case(f"conv-dzdy{shape}", lambda s=shape: vl_nnconv(X, F, B, zeros(*s)), ValueError, message)

for shape in ((0, 5, 4, 2), (5, 0, 4, 2), (0, 0), (5, 0, 0, 0)):
    case(f"pool-x{shape}", lambda s=shape: vl_nnpool(zeros(*s), 1), ValueError,
         f"vl_nnpool: X has zero height or width ({shape}); there is nothing to pool")
    case(f"pool-x{shape}-backward", lambda s=shape: vl_nnpool(zeros(*s), 1, zeros(*s)), ValueError,
         f"vl_nnpool: X has zero height or width ({shape}); there is nothing to pool")
for shape in ((0,), (0, 0), (3, 3, 4, 0), (3, 0, 4, 2)):
    message = (f"vl_nnpool: DZDY must have 2 to 4 dimensions (H x W x C x N), got 1 ({shape})"
               if len(shape) == 1 else
               f"vl_nnpool: DZDY has shape {shape} but the output of the pooling is (3, 3, 4, 2)")
    case(f"pool-dzdy{shape}", lambda s=shape: vl_nnpool(X, 3, zeros(*s)), ValueError, message)

for shape in ((0,), (0, 0), (5, 5, 4, 0)):
    case(f"relu-dzdy{shape}", lambda s=shape: vl_nnrelu(X, zeros(*s)), ValueError,
         f"vl_nnrelu: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
    case(f"prelu-dzdy{shape}", lambda s=shape: vl_nnprelu(X, zeros(4), zeros(*s)), ValueError,
         f"vl_nnprelu: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
    case(f"dropout-dzdy{shape}", lambda s=shape: vl_nndropout(X, zeros(*s), mask=MASK), ValueError,
         f"vl_nndropout: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
    case(f"dropout-mask{shape}", lambda s=shape: vl_nndropout(X, mask=zeros(*s)), ValueError,
         f"vl_nndropout: MASK has shape {shape} but X has shape (5, 5, 4, 2)")
    case(f"dropout-mask{shape}-backward", lambda s=shape: vl_nndropout(X, X, mask=zeros(*s)), ValueError,
         f"vl_nndropout: MASK has shape {shape} but X has shape (5, 5, 4, 2)")
for shape in ((0,), (0, 0), (5, 5, 4, 0), (5, 5, 4, 2, 1)):
    for fn, fname in ACTIVATIONS:
        case(f"{fname}-dzdy{shape}", lambda s=shape, fn=fn: fn(X, zeros(*s)), ValueError,
             f"{fname}: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
for shape in ((0,), (0, 0), (4, 0)):
    case(f"prelu-a{shape}", lambda s=shape: vl_nnprelu(X, zeros(*s)), ValueError,
         "vl_nnprelu: A has 0 elements but X has 4 channels (need 1 or C)")
case("dropout-backward-no-mask", lambda: vl_nndropout(X, X, mask=[]), ValueError,
     "vl_nndropout: the backward call needs the forward pass's MASK ('mask', mask)")

for c in (np.zeros(0), np.zeros((0, 0)), np.zeros((5, 5, 1, 0)), np.zeros((0, 5, 1, 2))):
    case(f"softmaxloss-c{c.shape}", lambda c=c: vl_nnsoftmaxloss(X, c), ValueError,
         f"vl_nnsoftmaxloss: labels C have shape {c.shape} but X is 5 x 5 x 4 x 2; give N labels (one per "
         "image), an H x W x 1 x N array, or H x W x 2 x N or 1 x 1 x 2 x N with weights in the second channel")
    case(f"nnloss-c{c.shape}", lambda c=c: vl_nnloss(X, c), ValueError,
         f"vl_nnloss: labels C have shape {c.shape} but X is 5 x 5 x 4 x 2; give N labels (one per image) "
         "or an H x W x 1 x N array")
for c in (np.ones((5, 5, 2, 2)), np.ones((1, 1, 2, 2)), np.ones((5, 5, 1, 2, 1, 2))):
    # vl_nnloss takes one label per pixel; the weighted forms are vl_nnsoftmaxloss's
    case(f"nnloss-c{c.shape}", lambda c=c: vl_nnloss(X, c), ValueError,
         f"vl_nnloss: labels C have shape {c.shape} but X is 5 x 5 x 4 x 2; give N labels (one per image) "
         "or an H x W x 1 x N array")
for fn, fname in ((vl_nnsoftmaxloss, "vl_nnsoftmaxloss"), (vl_nnloss, "vl_nnloss")):
    for c in (np.array([True, False]), np.array([1 + 0j, 2]), np.array(["a", "b"])):
        case(f"{fname}-c-{c.dtype}", lambda c=c, fn=fn: fn(X, c), TypeError,
             f"{fname}: labels C must be real numbers, got a {c.dtype} array")
for shape in ((0,), (0, 0), (1, 0)):
    case(f"softmaxloss-dzdy{shape}", lambda s=shape: vl_nnsoftmaxloss(X, [1, 2], zeros(*s)), ValueError,
         f"vl_nnsoftmaxloss: DZDY must be a scalar (1 element), got shape {shape}")
for fn, fname in ((vl_nnsoftmaxloss, "vl_nnsoftmaxloss"), (vl_nnloss, "vl_nnloss")):
    case(f"{fname}-weights(0,)", lambda fn=fn: fn(X, [1, 2], instance_weights=np.zeros(0)), ValueError,
         f"{fname}: InstanceWeights is a vector of 0 values; give N = 2 (one per image) or an array "
         "broadcastable to H x W x 1 x N")
    for shape in ((0, 0), (5, 5, 1, 0), (0, 1, 1, 2)):
        case(f"{fname}-weights{shape}", lambda fn=fn, s=shape: fn(X, [1, 2], instance_weights=np.zeros(s)),
             ValueError, f"{fname}: InstanceWeights of shape {shape} does not broadcast to the instances "
             "5 x 5 x 1 x 2")

case("concat-no-inputs", lambda: vl_nnconcat([], 3), ValueError,
     "vl_nnconcat: INPUTS is empty; there is nothing to concatenate")
case("concat-no-sizes", lambda: vl_nnconcat(None, 3, X, input_sizes=[]), ValueError,
     "vl_nnconcat: InputSizes is empty")
case("concat-empty-size", lambda: vl_nnconcat(None, 3, X, input_sizes=[[]]), ValueError,
     "vl_nnconcat: input 0 must have 2 to 4 dimensions (H x W x C x N), got ()")
case("concat-backward-nothing", lambda: vl_nnconcat([], 3, X), ValueError,
     "vl_nnconcat: backward needs INPUTS or the InputSizes option")
for shape in ((0,), (5, 5, 0, 2)):
    message = (f"vl_nnconcat: DZDY must have 2 to 4 dimensions (H x W x C x N), got 1 ({shape})"
               if len(shape) == 1 else
               f"vl_nnconcat: DZDY has shape {shape} but the concatenation has shape (5, 5, 8, 2)")
    case(f"concat-dzdy{shape}", lambda s=shape: vl_nnconcat([X, X], 3, zeros(*s)), ValueError, message)


# vl_nnconvt: Upsample, Crop, NumGroups (errors before the conv kernels run); vl_nncrop's CROP
FT = zeros(3, 3, 2, 4)  # vl_nnconvt(X, FT): 2 output channels
for option, label, kind in (("upsample", "Upsample", "pair"), ("crop", "Crop", "pad4")):
    for i, (value, error, message) in enumerate(integer_values(label, kind)):
        case(f"convt-{option}-{i}", lambda v=value, o=option: vl_nnconvt(X, FT, None, **{o: v}),
             error, f"vl_nnconvt: {message}")
for i, (value, error, message) in enumerate(integer_values("CROP", "pad4")):
    case(f"crop-crop-{i}", lambda v=value: vl_nncrop(X, v), error, f"vl_nncrop: {message}")
case("convt-numgroups-0", lambda: vl_nnconvt(X, FT, None, num_groups=0), ValueError,
     "vl_nnconvt: NumGroups must be at least 1, got 0")
case("convt-numgroups-1.5", lambda: vl_nnconvt(X, FT, None, "NumGroups", 1.5), ValueError,
     "vl_nnconvt: NumGroups must hold whole numbers, got 1.5")
case("convt-no-channels", lambda: vl_nnconvt(X[:, :, :0], FT[:, :, :, :0], None), ValueError,
     "vl_nnconvt: X has shape (5, 5, 0, 2); H, W and C must be at least 1 (only N may be 0)")
case("convt-filters-0", lambda: vl_nnconvt(X, FT[:, :, :0], None), ValueError,
     "vl_nnconvt: F has shape (3, 3, 0, 4); FH, FW, K and C must be at least 1")
case("convt-crop-beyond-2^62", lambda: vl_nnconvt(X, FT, None, upsample=2**61), ValueError,
     f"vl_nnconvt: Y before cropping would be {4 * 2**61 + 3} x {4 * 2**61 + 3}; each must be less than 2^62")


# vl_nnbnorm: Epsilon, G, B, Moments and DZDY
G4 = zeros(4)
for value in (NAN, INF, -INF):
    case(f"bnorm-epsilon-{value}", lambda v=value: vl_nnbnorm(X, G4, G4, epsilon=v), ValueError,
         f"vl_nnbnorm: Epsilon must be a finite real number, got {value!r}")
case("bnorm-epsilon-negative", lambda: vl_nnbnorm(X, G4, G4, epsilon=-1e-9), ValueError,
     "vl_nnbnorm: Epsilon must be at least 0, got -1e-09")
case("bnorm-epsilon-string", lambda: vl_nnbnorm(X, G4, G4, "Epsilon", "1"), TypeError,
     "vl_nnbnorm: Epsilon must be a real number, got '1'")
case("bnorm-epsilon-2^1024", lambda: vl_nnbnorm(X, G4, G4, epsilon=2**1024), ValueError,
     f"vl_nnbnorm: Epsilon must be a finite real number, got {2**1024!r}")
case("bnorm-cudnn", lambda: vl_nnbnorm(X, G4, G4, "NoCuDNN"), TypeError,
     "vl_nnbnorm: unknown option 'NoCuDNN'. Valid options are: Epsilon, Moments")
for shape in ((0,), (0, 0), (3,), (4, 2)):
    for arg, call in (("G", lambda s=shape: vl_nnbnorm(X, zeros(*s), G4)),
                      ("B", lambda s=shape: vl_nnbnorm(X, G4, zeros(*s)))):
        case(f"bnorm-{arg}{shape}", call, ValueError,
             f"vl_nnbnorm: {arg} has {int(np.prod(shape))} elements but X has 4 channels")
for shape in ((0,), (0, 0), (4,), (4, 3)):
    case(f"bnorm-moments{shape}", lambda s=shape: vl_nnbnorm(X, G4, G4, moments=zeros(*s)), ValueError,
         f"vl_nnbnorm: MOMENTS has {int(np.prod(shape))} elements but X has 4 channels (need 2C: C x 2 [MU SIGMA])")
case("bnorm-moments-[]", lambda: vl_nnbnorm(X, G4, G4, moments=[]), ValueError,
     "vl_nnbnorm: MOMENTS has 0 elements but X has 4 channels (need 2C: C x 2 [MU SIGMA])")
case("bnorm-moments-float64", lambda: vl_nnbnorm(X, G4, G4, moments=np.zeros((4, 2))), TypeError,
     "vl_nnbnorm: MOMENTS is float64 but X is float32; all arrays must share one dtype")
case("bnorm-g-float64", lambda: vl_nnbnorm(X, np.zeros(4), G4), TypeError,
     "vl_nnbnorm: G is float64 but X is float32; all arrays must share one dtype")
case("bnorm-g-int", lambda: vl_nnbnorm(X, np.zeros(4, int), G4), TypeError,
     "vl_nnbnorm: G must be a float32 or float64 array, got an integer array (int64)")
for shape in ((0,), (0, 0), (5, 5, 4, 0), (5, 5, 4)):
    case(f"bnorm-dzdy{shape}", lambda s=shape: vl_nnbnorm(X, G4, G4, zeros(*s)), ValueError,
         f"vl_nnbnorm: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
for shape in ((0, 5, 4, 2), (5, 0, 4, 2), (5, 5, 4, 0), (0, 4)):
    channels = shape[2] if len(shape) > 2 else 1
    for ident, dzdy in (("", ()), ("-backward", (zeros(*shape),))):
        case(f"bnorm-x{shape}{ident}",
             lambda s=shape, c=channels, d=dzdy: vl_nnbnorm(zeros(*s), zeros(c), zeros(c), *d), ValueError,
             f"vl_nnbnorm: X has shape {shape}; the moments of a batch without values (H*W*N = 0) are "
             "undefined (give Moments)")
case("bnorm-x-5d", lambda: vl_nnbnorm(zeros(1, 1, 4, 1, 1), G4, G4), ValueError,
     "vl_nnbnorm: X must have 2 to 4 dimensions (H x W x C x N), got 5 ((1, 1, 4, 1, 1))")


# vl_nnbilinearsampler: GRID's shape against X's, zero-size X, DZDY, no options
GRID = zeros(2, 3, 3, 4)  # two grids per image of X
for shape, message in (((3, 3, 3, 4), "GRID has shape (3, 3, 3, 4); its first dimension must be 2 (the (v, u) "
                                      "coordinates of each point)"),
                       ((2, 3, 3, 3), "GRID has 3 grids (its 4th dimension), not a multiple of the 2 images of X"),
                       ((2, 3, 3, 1), "GRID has 1 grids (its 4th dimension), not a multiple of the 2 images of X"),
                       ((2,), "GRID must have 2 to 4 dimensions (H x W x C x N), got 1 ((2,))")):
    case(f"sampler-grid{shape}", lambda s=shape: vl_nnbilinearsampler(X, zeros(*s)), ValueError,
         f"vl_nnbilinearsampler: {message}")
for shape in ((0, 5, 4, 2), (5, 0, 4, 2)):
    case(f"sampler-x{shape}", lambda s=shape: vl_nnbilinearsampler(zeros(*s), GRID), ValueError,
         f"vl_nnbilinearsampler: X has shape {shape}; H and W must be at least 1 (there must be pixels to sample)")
for shape in ((3, 3, 4, 2), (3, 3, 4), (0, 0)):
    case(f"sampler-dzdy{shape}", lambda s=shape: vl_nnbilinearsampler(X, GRID, zeros(*s)), ValueError,
         f"vl_nnbilinearsampler: DZDY has shape {shape} but Y has shape (3, 3, 4, 4)")
case("sampler-option", lambda: vl_nnbilinearsampler(X, GRID, "Verbose"), TypeError,
     "vl_nnbilinearsampler: unknown option 'Verbose'; vl_nnbilinearsampler takes no options")
case("sampler-grid-float64", lambda: vl_nnbilinearsampler(X, np.zeros((2, 3, 3, 4))), TypeError,
     "vl_nnbilinearsampler: GRID is float64 but X is float32; all arrays must share one dtype")

# vl_nnsoftmax, vl_nnsigmoid: no options; X and DZDY
for fn, fname in ((vl_nnsoftmax, "vl_nnsoftmax"), (vl_nnsigmoid, "vl_nnsigmoid")):
    case(f"{fname}-int", lambda fn=fn: fn(np.zeros((2, 2, 3), np.int32)), TypeError,
         f"{fname}: X must be a float32 or float64 array, got an integer array (int32)")
    case(f"{fname}-complex-dzdy", lambda fn=fn: fn(X, X.astype(np.complex64)), TypeError,
         f"{fname}: DZDY must be a float32 or float64 array, got a complex array (complex64)")
    case(f"{fname}-dzdy-float64", lambda fn=fn: fn(X, np.zeros(X.shape)), TypeError,
         f"{fname}: DZDY is float64 but X is float32; all arrays must share one dtype")
    for shape in ((0,), (0, 0), (5, 5, 4), (5, 5, 4, 0)):
        case(f"{fname}-dzdy{shape}", lambda fn=fn, s=shape: fn(X, zeros(*s)), ValueError,
             f"{fname}: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
    case(f"{fname}-option", lambda fn=fn: fn(X, "Verbose"), TypeError,
         f"{fname}: unknown option 'Verbose'; {fname} takes no options")
    case(f"{fname}-keyword", lambda fn=fn: fn(X, [], leak=0.1), TypeError,
         f"{fname}: unknown option 'leak'; {fname} takes no options")
case("softmax-x-5d", lambda: vl_nnsoftmax(zeros(1, 1, 4, 1, 1)), ValueError,
     "vl_nnsoftmax: X must have 2 to 4 dimensions (H x W x C x N), got 5 ((1, 1, 4, 1, 1))")
case("softmax-x-1d", lambda: vl_nnsoftmax(zeros(4)), ValueError,
     "vl_nnsoftmax: X must have 2 to 4 dimensions (H x W x C x N), got 1 ((4,))")

# vl_nnroipool: Method, Subdivisions, Transform, ROIS and DZDY
ROIS = np.array([[1, 1, 1, 3, 3], [2, 2, 2, 5, 5]], np.float32).T
for i, (value, error, message) in enumerate(integer_values("Subdivisions", "pair")):
    case(f"roipool-subdivisions-{i}", lambda v=value: vl_nnroipool(X, ROIS, subdivisions=v), error,
         f"vl_nnroipool: {message}")
for value, error, message in ((NAN, ValueError, "Transform must be a finite real number, got nan"),
                              ([1, INF], ValueError, "Transform must be a finite real number, got inf"),
                              (True, TypeError, "Transform must be a real number, got True"),
                              ([[1, 2]] * 2, ValueError, "Transform must have 1, 2 or 6 elements (a scale, [Tu Tv] or "
                                                         "a 2 x 3 matrix), got 4"),
                              ([], ValueError, "Transform must have 1, 2 or 6 elements (a scale, [Tu Tv] or a 2 x 3 "
                                               "matrix), got 0")):
    case(f"roipool-transform-{value}", lambda v=value: vl_nnroipool(X, ROIS, "Transform", v), error,
         f"vl_nnroipool: {message}")
case("roipool-method", lambda: vl_nnroipool(X, ROIS, method="sum"), ValueError,
     "vl_nnroipool: Method must be one of 'max', 'avg', got 'sum'")
for value, message in ((0, "ROIS[0, 1] is image 0"), (3, "ROIS[0, 1] is image 3"), (NAN, "ROIS must hold finite"),
                       (1.5, "ROIS[0, 1] is image 1.5")):
    rois = ROIS.copy()
    rois[0, 1] = value
    text = (f"vl_nnroipool: {message} numbers" if value != value else
            f"vl_nnroipool: {message}; image indices must be whole numbers in 1..2 (X has 2 images)")
    case(f"roipool-image-{value}", lambda r=rois: vl_nnroipool(X, r), ValueError, text)
case("roipool-rois-size", lambda: vl_nnroipool(X, zeros(4, 2)), ValueError,
     "vl_nnroipool: ROIS has 8 elements; it must be a 5 x K array [t u0 v0 u1 v1] (5 K elements)")
case("roipool-corners-inf", lambda: vl_nnroipool(X, ROIS, transform=1e300), ValueError,
     "vl_nnroipool: ROIS has corners at 4e+300 after the Transform; they must be less than 2^52 in magnitude")
for shape in ((0, 5, 4, 2), (5, 0, 4, 2)):
    case(f"roipool-x{shape}", lambda s=shape: vl_nnroipool(zeros(*s), ROIS), ValueError,
         f"vl_nnroipool: X has shape {shape}; H and W must be at least 1 (there must be pixels to pool)")
for shape in ((1, 1, 4, 1), (1, 1, 4), (0, 0)):
    case(f"roipool-dzdy{shape}", lambda s=shape: vl_nnroipool(X, ROIS, zeros(*s)), ValueError,
         f"vl_nnroipool: DZDY has shape {shape} but Y has shape (1, 1, 4, 2)")
case("roipool-rois-float64", lambda: vl_nnroipool(X, ROIS.astype(np.float64)), TypeError,
     "vl_nnroipool: ROIS is float64 but X is float32; all arrays must share one dtype")

# vl_nnnormalize: PARAM [N KAPPA ALPHA BETA], X and DZDY, no options
LRN_PARAM = (
    "vl_nnnormalize: PARAM must be 4 finite real numbers [N KAPPA ALPHA BETA] with N a whole number from 1 to 2^62 - 1")
for value in ([0, 1, 1, 1], [-1, 1, 1, 1], [1.5, 1, 1, 1], [2**62, 1, 1, 1], [NAN, 1, 1, 1], [INF, 1, 1, 1],
              [5, NAN, 1, 1], [5, 1, INF, 1], [5, 1, 1, -INF], [5, 1, 1, 2**1024], [5, 1, 1], [5, 1, 1, 1, 1], [],
              5, np.array([5.0, 1, 1]), np.zeros((0, 4))):
    case(f"normalize-param-{value!r}", lambda v=value: vl_nnnormalize(X, v), ValueError,
         f"{LRN_PARAM}, got {value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value!r}")
for value in ("5", [5, 1, 1, "1"], None, [5, 1, True, 1], [5, 1, 1, 1j], np.ones(4, complex), [[5, 1], [1]]):
    case(f"normalize-param-{value!r}", lambda v=value: vl_nnnormalize(X, v), TypeError,
         f"{LRN_PARAM}, got {value!r}")
case("normalize-param-backward", lambda: vl_nnnormalize(X, [0, 1, 1, 1], X), ValueError,
     f"{LRN_PARAM}, got [0, 1, 1, 1]")
case("normalize-int", lambda: vl_nnnormalize(np.zeros((2, 2, 3), np.int32), [5, 1, 1, 1]), TypeError,
     "vl_nnnormalize: X must be a float32 or float64 array, got an integer array (int32)")
case("normalize-dzdy-float64", lambda: vl_nnnormalize(X, [5, 1, 1, 1], np.zeros(X.shape)), TypeError,
     "vl_nnnormalize: DZDY is float64 but X is float32; all arrays must share one dtype")
for shape in ((0,), (0, 0), (5, 5, 4), (5, 5, 4, 0)):
    case(f"normalize-dzdy{shape}", lambda s=shape: vl_nnnormalize(X, [5, 1, 1, 1], zeros(*s)),
         ValueError, f"vl_nnnormalize: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
case("normalize-x-5d", lambda: vl_nnnormalize(zeros(1, 1, 4, 1, 1), [5, 1, 1, 1]), ValueError,
     "vl_nnnormalize: X must have 2 to 4 dimensions (H x W x C x N), got 5 ((1, 1, 4, 1, 1))")
case("normalize-verbose", lambda: vl_nnnormalize(X, [5, 1, 1, 1], "Verbose"), TypeError,
     "vl_nnnormalize: unknown option 'Verbose'; vl_nnnormalize takes no options")


# vl_nnnoffset: PARAM [K ALPHA]; vl_nnspnorm: PARAM [PH PW ALPHA BETA]; X and DZDY; no options
NOFFSET_PARAM = "vl_nnnoffset: PARAM must be 2 finite real numbers [K ALPHA]"
for value in ([1], [1, 2, 3], [NAN, 1], [1, INF], [1, 2**1024], [], np.zeros((0, 2))):
    case(f"noffset-param-{value!r}", lambda v=value: vl_nnnoffset(X, v), ValueError,
         f"{NOFFSET_PARAM}, got {value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value!r}")
for value in ("1", [1, "2"], None, [True, 1], [1, 1j]):
    case(f"noffset-param-{value!r}", lambda v=value: vl_nnnoffset(X, v), TypeError, f"{NOFFSET_PARAM}, got {value!r}")
SPNORM_PARAM = ("vl_nnspnorm: PARAM must be 4 finite real numbers [PH PW ALPHA BETA] with PH and PW whole numbers "
                "from 1 to 2^62 - 1")
for value in ([0, 3, 1, 1], [3, -1, 1, 1], [2.5, 3, 1, 1], [3, 2**62, 1, 1], [3, 3, NAN, 1], [3, 3, 1, -INF],
              [3, 3, 1], [3, 3, 1, 1, 1]):
    case(f"spnorm-param-{value!r}", lambda v=value: vl_nnspnorm(X, v), ValueError, f"{SPNORM_PARAM}, got {value!r}")
case("spnorm-window-2^31", lambda: vl_nnspnorm(X, [2**31, 3, 1, 1]), ValueError,
     "vl_nnspnorm: PARAM's window 2147483648 x 3: vl_nnpool: POOL [2147483648, 3] is too large (at most 2147483646)")
for value in ("3", [3, 3, 1, None], [3, 3, False, 1]):
    case(f"spnorm-param-{value!r}", lambda v=value: vl_nnspnorm(X, v), TypeError, f"{SPNORM_PARAM}, got {value!r}")
for fn, fname, param in ((vl_nnnoffset, "vl_nnnoffset", [1, 0.5]), (vl_nnspnorm, "vl_nnspnorm", [3, 3, 1, 1])):
    case(f"{fname}-int", lambda fn=fn, p=param: fn(np.zeros((2, 2, 3), np.int32), p), TypeError,
         f"{fname}: X must be a float32 or float64 array, got an integer array (int32)")
    case(f"{fname}-dzdy-float64", lambda fn=fn, p=param: fn(X, p, np.zeros(X.shape)), TypeError,
         f"{fname}: DZDY is float64 but X is float32; all arrays must share one dtype")
    for shape in ((0,), (5, 5, 4), (5, 5, 4, 0)):
        case(f"{fname}-dzdy{shape}", lambda fn=fn, p=param, s=shape: fn(X, p, zeros(*s)), ValueError,
             f"{fname}: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
    case(f"{fname}-x-5d", lambda fn=fn, p=param: fn(zeros(1, 1, 4, 1, 1), p), ValueError,
         f"{fname}: X must have 2 to 4 dimensions (H x W x C x N), got 5 ((1, 1, 4, 1, 1))")
    case(f"{fname}-option", lambda fn=fn, p=param: fn(X, p, "Verbose"), TypeError,
         f"{fname}: unknown option 'Verbose'; {fname} takes no options")

# vl_nnnormalizelp: Epsilon, Exponent/P, Dimensions, Spatial, Norms, X and DZDY
LP_DIMS = "vl_nnnormalizelp: Dimensions must be whole numbers from 1 to 4 (the dimensions of X to reduce), got "
for value in (0, 5, [1, 5], [0, 3], 1.5, [3, NAN], [], np.zeros(0), 2**63):
    case(f"normalizelp-dimensions-{value!r}", lambda v=value: vl_nnnormalizelp(X, dimensions=v), ValueError,
         f"{LP_DIMS}{value!r}")
for value in ("3", [1, "2"]):
    case(f"normalizelp-dimensions-{value!r}", lambda v=value: vl_nnnormalizelp(X, "Dimensions", v), TypeError,
         f"{LP_DIMS}{value!r}")
for option, label in (("epsilon", "Epsilon"), ("exponent", "Exponent"), ("p", "P")):
    for value in (NAN, INF, -INF):
        case(f"normalizelp-{option}-{value}", lambda v=value, o=option: vl_nnnormalizelp(X, **{o: v}), ValueError,
             f"vl_nnnormalizelp: {label} must be a finite real number, got {value}")
    case(f"normalizelp-{option}-str", lambda o=option, lab=label: vl_nnnormalizelp(X, X, lab, "2"), TypeError,
         f"vl_nnnormalizelp: {label} must be a real number, got '2'")
case("normalizelp-p-0", lambda: vl_nnnormalizelp(X, "P", 0), ValueError,
     "vl_nnnormalizelp: the exponent (Exponent or P) must not be 0")
case("normalizelp-p-and-exponent", lambda: vl_nnnormalizelp(X, "P", 2, "Exponent", 4), TypeError,
     "vl_nnnormalizelp: give the exponent as Exponent or as P, not both")
case("normalizelp-spatial-and-dimensions", lambda: vl_nnnormalizelp(X, "Spatial", "Dimensions", 3), TypeError,
     "vl_nnnormalizelp: give Spatial or Dimensions, not both")
case("normalizelp-spatial-value", lambda: vl_nnnormalizelp(X, spatial=2), ValueError,
     "vl_nnnormalizelp: Spatial must be true or false (or 1 or 0), got 2")
case("normalizelp-unknown", lambda: vl_nnnormalizelp(X, "Verbose"), TypeError,
     "vl_nnnormalizelp: unknown option 'Verbose'. Valid options are: Epsilon, Exponent, P, Dimensions, Spatial, Norms")
for shape, count in (((5, 5, 1, 1), 25), ((4, 2), 8), ((0,), 0)):
    case(f"normalizelp-norms{shape}", lambda s=shape: vl_nnnormalizelp(X, norms=zeros(*s)), ValueError,
         f"vl_nnnormalizelp: NORMS has {count} elements but X's norms have 50 (shape (5, 5, 1, 2))")
case("normalizelp-norms-float64", lambda: vl_nnnormalizelp(X, X, norms=np.ones((5, 5, 1, 2))), TypeError,
     "vl_nnnormalizelp: NORMS is float64 but X is float32; all arrays must share one dtype")
case("normalizelp-norms-int", lambda: vl_nnnormalizelp(X, norms=np.ones(50, int)), TypeError,
     "vl_nnnormalizelp: NORMS must be a float32 or float64 array, got an integer array (int64)")
case("normalizelp-int", lambda: vl_nnnormalizelp(np.zeros((2, 2, 3), np.int32)), TypeError,
     "vl_nnnormalizelp: X must be a float32 or float64 array, got an integer array (int32)")
case("normalizelp-dzdy-float64", lambda: vl_nnnormalizelp(X, np.zeros(X.shape)), TypeError,
     "vl_nnnormalizelp: DZDY is float64 but X is float32; all arrays must share one dtype")
for shape in ((0,), (5, 5, 4), (5, 5, 4, 0)):
    case(f"normalizelp-dzdy{shape}", lambda s=shape: vl_nnnormalizelp(X, zeros(*s)), ValueError,
         f"vl_nnnormalizelp: DZDY has shape {shape} but X has shape (5, 5, 4, 2)")
case("normalizelp-x-5d", lambda: vl_nnnormalizelp(zeros(1, 1, 4, 1, 1)), ValueError,
     "vl_nnnormalizelp: X must have 2 to 4 dimensions (H x W x C x N), got 5 ((1, 1, 4, 1, 1))")


@pytest.mark.parametrize("call, error, message", CASES)
def test_error_names_function_and_argument(call, error, message, no_kernels):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()


@pytest.mark.parametrize("call, message", LABEL_CASES)
def test_label_values_name_the_labels(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


@pytest.mark.parametrize("ignored", [[1, -1], [1, -2**63], np.array([1, -2**101], dtype=object), [1, -1e300]])
def test_every_label_of_0_or_less_is_ignored_as_in_matconvnet(ignored):
    x = np.random.default_rng(0).standard_normal(X.shape).astype(np.float32)
    p = abs(x)
    for loss in ("softmaxlog", "log", "mhinge", "mshinge", "classerror", "topkerror"):
        assert vl_nnloss(p, ignored, loss=loss) == vl_nnloss(p, [1, 0], loss=loss)
        np.testing.assert_array_equal(vl_nnloss(p, ignored, 1.0, loss=loss), vl_nnloss(p, [1, 0], 1.0, loss=loss))
    assert vl_nnsoftmaxloss(x, ignored) == vl_nnsoftmaxloss(x, [1, 0])
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, ignored, 1.0), vl_nnsoftmaxloss(x, [1, 0], 1.0))


# ------------------------------------------------------------------------------------------------
# What is accepted at the edges
# ------------------------------------------------------------------------------------------------

def test_largest_option_values_work():
    x = np.arange(100, dtype=np.float64).reshape(5, 5, 4, 1, order="F")
    f = np.ones((3, 3, 4, 2))
    limit = 2**62 - 1
    # a stride beyond the input keeps the first window only
    np.testing.assert_array_equal(vl_nnconv(x, f, None, stride=limit), vl_nnconv(x, f, None, stride=5))
    np.testing.assert_array_equal(vl_nnpool(x, 2, stride=[limit, np.uint64(limit)]), vl_nnpool(x, 2, stride=9))
    y = vl_nnpool(x, 2, stride=limit)
    np.testing.assert_array_equal(vl_nnpool(x, 2, np.ones_like(y), stride=limit),
                                  vl_nnpool(x, 2, np.ones_like(y), stride=9))
    dx, df, _ = vl_nnconv(x, f, None, np.ones((1, 1, 2, 1)), stride=limit)
    dx5, df5, _ = vl_nnconv(x, f, None, np.ones((1, 1, 2, 1)), stride=5)
    np.testing.assert_array_equal(dx, dx5)
    np.testing.assert_array_equal(df, df5)
    assert vl_nnrelu(-np.ones(3), leak=2**52)[0] == -2**52
    assert vl_nnrelu(np.ones(3), leak=2**52)[0] == 1  # the slope of x > 0 is still exactly 1
    # a window of 2^62 - 1 channels covers them all, as one of 2C - 1 does
    for dzdy in ((), (x,)):
        np.testing.assert_array_equal(vl_nnnormalize(x, [2**62 - 1, 1, 1, 1], *dzdy),
                                      vl_nnnormalize(x, [7, 1, 1, 1], *dzdy))
        np.testing.assert_array_equal(vl_nnspnorm(x, [2**31 - 2, 1, 1, 1], *dzdy), vl_nnspnorm(x, [9, 1, 1, 1], *dzdy))


@pytest.mark.parametrize("value", [True, False, 1, 0, np.bool_(True), np.int8(1)])
def test_flags_take_booleans_and_0_or_1(value):
    dx, df, db = vl_nnconv(X, F, B, DY, no_der_data=value)
    assert (dx is None) == bool(value) and df is not None and db is not None


def test_placeholders_mean_none():
    # MATLAB's [] (None, an empty list, a 0 or 0 x 0 array) is the identity bank / no biases
    expected = vl_nnconv(X, None, None, pad=1)
    for empty in (None, [], np.zeros(0, np.float32), np.zeros((0, 0), np.float32)):
        np.testing.assert_array_equal(vl_nnconv(X, empty, empty, pad=1), expected)
    np.testing.assert_array_equal(vl_nnconv(X, F, np.zeros((0, 0), np.float32)), vl_nnconv(X, F, None))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_images(dtype):
    x = np.zeros((5, 5, 4, 0), dtype)
    f, b = np.ones((3, 3, 4, 6), dtype), np.ones((1, 6), dtype)
    y = vl_nnconv(x, f, b, pad=1)
    assert y.shape == (5, 5, 6, 0) and y.dtype == dtype
    dx, df, db = vl_nnconv(x, f, b, y, pad=1)
    assert dx.shape == x.shape and df.shape == f.shape and db.shape == b.shape
    assert not df.any() and not db.any()
    assert vl_nnconv(x, None, None, stride=2).shape == (3, 3, 4, 0)
    assert vl_nnpool(x, 2).shape == (4, 4, 4, 0)
    assert vl_nnpool(x, 2, np.zeros((4, 4, 4, 0), dtype)).shape == x.shape
    assert vl_nnsoftmaxloss(x, np.zeros(0)) == 0
    assert vl_nnsoftmaxloss(x, np.zeros(0), 1.0, instance_weights=np.zeros(0)).shape == x.shape
    assert vl_nnloss(x, np.zeros(0), loss="classerror", instance_weights=np.zeros(0)) == 0
    assert vl_nnconcat([x, x], 4).shape == x.shape
    assert vl_nnconcat([x, np.ones((5, 5, 4, 1), dtype)], 4).shape == (5, 5, 4, 1)


@pytest.mark.parametrize("shape", [(0, 3, 2, 2), (3, 0, 2, 2), (3, 3, 0, 2), (3, 3, 2, 0)])
def test_elementwise_blocks_and_losses_on_empty_arrays(shape):
    x = np.zeros(shape, np.float64)
    a = np.full(shape[2], 0.1)
    for out in (vl_nnrelu(x), vl_nnrelu(x, x, leak=0.1), vl_nnprelu(x, a), vl_nnprelu(x, a, x)[0],
                vl_nndropout(x, seed=1)[0], vl_nndropout(x, mask=x)[0], vl_nndropout(x, x, mask=x),
                vl_nnsoftmax(x), vl_nnsoftmax(x, x), vl_nnsigmoid(x), vl_nnsigmoid(x, x),
                vl_nnnormalize(x, [5, 1, 1, 1]), vl_nnnormalize(x, [5, 1, 1, 1], x),
                *(fn(x) for fn, _ in ACTIVATIONS), *(fn(x, x) for fn, _ in ACTIVATIONS)):
        assert out.shape == shape and out.dtype == x.dtype
    dzda = vl_nnprelu(x, a, x)[1]
    np.testing.assert_array_equal(dzda, np.zeros_like(a))  # a sum over no elements
    assert vl_nnprelu(x, np.ones(1), x)[1].shape == (1,)
    # a loss over no pixels, images or classes is 0 (every label is then 0: ignored)
    labels = np.zeros(shape[3])
    for loss in ("softmaxlog", "log", "mhinge", "mshinge", "classerror", "topkerror"):
        assert vl_nnloss(x, labels, loss=loss) == 0
        assert vl_nnloss(x, labels, loss=loss, instance_weights=np.ones(shape[3])) == 0
        assert vl_nnloss(x, labels, 1.0, loss=loss).shape == shape
    for loss in ("binaryerror", "binarylog", "logistic", "hinge", "l2"):
        assert vl_nnloss(x, x, loss=loss, instance_weights=np.ones(shape[3])) == 0
        assert vl_nnloss(x, x, 1.0, loss=loss).shape == shape
    assert vl_nnpdist(x, x, 2).shape == shape[:2] + (1, shape[3])
    assert not np.any(vl_nnpdist(x, x, 2))  # no channels: distance 0
    assert vl_nnpdist(x, x, 2, aggregate=True) == 0
    dzdx, dzdx0 = vl_nnpdist(x, x, 3, np.ones(shape[:2] + (1, shape[3])))
    assert dzdx.shape == dzdx0.shape == shape
    assert vl_nnsoftmaxloss(x, labels) == 0
    assert vl_nnsoftmaxloss(x, labels, 1.0, instance_weights=np.ones(shape[3])).shape == shape
    assert vl_nnconcat([x, x], 1).shape == (2 * shape[0],) + shape[1:]
