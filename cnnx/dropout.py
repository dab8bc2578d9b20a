"""Inverted dropout: ``vl_nndropout``."""
import math
import numbers

import numpy as np

from ._checks import as_float_array, like, result_array
from ._ext import dropout as _kernels
from ._options import Option, parse_options, take_derivative
from ._threads import threads_for

_OPTIONS = {
    "rate": Option("float", 0.5, low=0, high=1, high_open=True),
    "mask": Option("any", None),
    "seed": Option("any", None),
    "rng": Option("any", None),
    "out": Option("any", None),
}

# Seeds for calls that give neither Seed nor Rng.
_seed_source = np.random.default_rng()


def _draw_seed(fname, seed, rng):
    """The 64-bit seed of a forward call: Seed itself, drawn from Rng, or from the module's generator."""
    if seed is not None and rng is not None:
        raise ValueError(f"{fname}: give Seed or Rng, not both")
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"{fname}: Seed must be an integer, got {seed!r}")
        if not 0 <= seed < 2**64:
            raise ValueError(f"{fname}: Seed must be in [0, 2^64), got {seed}")
        return int(seed)
    if rng is None:
        rng = _seed_source
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"{fname}: Rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return int(rng.integers(2**64, dtype=np.uint64))


def _check_not_mask(fname, out, mask):
    """Out must leave the mask intact: the caller keeps it for backward."""
    if np.may_share_memory(out, mask):
        raise ValueError(f"{fname}: OUT must not overlap MASK")


def vl_nndropout(x, *args, **kwargs):
    """Inverted dropout: zero each element with probability Rate and scale the rest by 1/(1 - Rate).

    Call forms::

        y, mask = vl_nndropout(x, 'rate', rate)           # or vl_nndropout(x, rate=rate, seed=s)
        y, mask = vl_nndropout(x, 'mask', mask)           # forward with a given mask: y = mask * x
        dzdx = vl_nndropout(x, dzdy, 'mask', mask)        # or vl_nndropout(x, dzdy=dzdy, mask=mask)

    The mask is ``1/(1 - rate) * (u >= rate)`` in x's dtype, with u uniform in [0, 1) per element,
    and ``y = mask * x``; backward gives ``dzdx = mask * dzdy``. Nothing changes at test time
    (callers skip the block). u comes from a counter-based generator hashed from a 64-bit seed and
    the element's index, so a seed gives the same mask at any thread count.

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.
    Rate : 0.5
        Probability of dropping an element, in [0, 1). Rate 0 gives a mask of ones.
    Mask : None
        The mask of the forward pass, shape and dtype of x (None or ``[]``: none). Required by the
        backward call; in a forward call it is used instead of drawing a new one.
    Seed : None
        Integer in [0, 2^64) that fixes the mask.
    Rng : None
        numpy.random.Generator from which a seed is drawn. Without Seed or Rng the seed comes from
        a generator of this module, seeded from the operating system.
    Out : None
        (cnnx only.) The array to write y or dzdx into instead of a new one: writeable, aligned,
        Fortran-contiguous, of x's shape and dtype; it may be x or dzdy itself (``vl_simplenn``
        overwrites so the arrays it frees), but not the mask, nor overlap an input otherwise.
        The backward call reads only x's shape and dtype, so the mask may stand in for x.

    Returns
    -------
    y, mask : ndarray, shape and dtype of x, Fortran-ordered
        Forward outputs (y is Out when given).
    dzdx : ndarray, shape and dtype of x
        Backward output (Out when given).

    Raises
    ------
    TypeError
        If x, dzdy or Mask is not float32/float64 or their dtypes differ, Seed is not an integer,
        Rng is not a Generator, an option is unknown, or Out is not an array of x's dtype.
    ValueError
        If Rate is outside [0, 1), dzdy or Mask has the wrong shape, the backward call has no Mask,
        Seed is out of range, Seed/Rng are combined with each other or with Mask, or Out is not
        shaped and laid out as above, is the mask or overlaps an input partly.

    Notes
    -----
    Without a mask MatConvNet's backward call warns and draws a fresh one, which gives a derivative
    that does not belong to the forward pass; here it is an error. An empty x (with an empty mask,
    if one is given) gives empty results.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nndropout
    >>> x = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    >>> y, mask = vl_nndropout(x, 'rate', 0.5, 'seed', 7)
    >>> mask
    array([[2., 2., 2.],
           [0., 2., 0.]], dtype=float32)
    >>> y
    array([[ 2.,  4.,  6.],
           [ 0., 10.,  0.]], dtype=float32)
    >>> vl_nndropout(x, np.ones_like(x), 'mask', mask)
    array([[2., 2., 2.],
           [0., 2., 0.]], dtype=float32)
    """
    fname = "vl_nndropout"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    opts = parse_options(fname, args, kwargs, _OPTIONS)
    rate = opts["rate"]
    x = as_float_array(x, "X", fname)
    n_threads = threads_for(x.size)
    mask = opts["mask"]
    if isinstance(mask, (list, tuple)) and len(mask) == 0:
        mask = None  # MatConvNet's [] placeholder
    if mask is not None:
        if opts["seed"] is not None or opts["rng"] is not None:
            raise ValueError(f"{fname}: Seed and Rng draw a mask; they cannot be combined with Mask")
        mask = like(mask, "MASK", fname, x, "X")
    if dzdy is not None:
        if mask is None:
            raise ValueError(f"{fname}: the backward call needs the forward pass's MASK ('mask', mask)")
        dzdy = like(dzdy, "DZDY", fname, x, "X")
        out = result_array(fname, opts["out"], x, dzdy)
        _check_not_mask(fname, out, mask)
        _kernels.multiply(np.asfortranarray(mask), np.asfortranarray(dzdy), out, n_threads)
        return out
    out = result_array(fname, opts["out"], x, x)
    if mask is not None:
        _check_not_mask(fname, out, mask)
        _kernels.multiply(np.asfortranarray(mask), np.asfortranarray(x), out, n_threads)
        return out, mask
    seed = _draw_seed(fname, opts["seed"], opts["rng"])
    mask = np.empty(x.shape, dtype=x.dtype, order="F")
    threshold = math.ceil(rate * 2.0**53)  # exact: scaling by a power of two
    _kernels.dropout_forward(np.asfortranarray(x), out, mask, seed, threshold, 1.0 / (1.0 - rate), n_threads)
    return out, mask
