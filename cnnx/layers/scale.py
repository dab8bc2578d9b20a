"""The scale layer kind: DagNN's ``dagnn.Scale`` (SimpleNN has none), y = x * scale + bias.

Examples
--------
>>> from cnnx.layers.scale import Scale
>>> Scale(size=(1, 1, 3)).get_output_sizes([(8, 8, 3, 2)], [(1, 1, 3, 1), (1, 1, 3, 1)])
[(8, 8, 3, 2)]
"""
import numpy as np

from .._checks import as_float_array, common_dtype
from .._options import whole_numbers
from .base import ElementWise, Property, flag, property_error
from .registry import register_block


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


def _sizes(owner, name, value):
    """A parameter shape: non-negative whole numbers, or none (MATLAB's ``[]``: not set)."""
    expected = "non-negative whole numbers (a shape) or []"
    if value is None or np.size(value) == 0:
        return ()
    try:
        dims = whole_numbers(owner, name, value)
    except (TypeError, ValueError) as error:
        raise property_error(owner, name, expected, value, type(error)) from None
    if min(dims) < 0:
        raise property_error(owner, name, expected, value)
    return tuple(dims)


def _matlab_view(a, ndim):
    """``a`` with the trailing singleton dimensions MATLAB drops put back, to ``ndim`` dimensions,
    so that NumPy broadcasts it against x as MATLAB's bsxfun does (dimensions aligned on the left)."""
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


@register_block
class Scale(ElementWise):
    """Multiply by a scale and add a bias, broadcasting them over x as MATLAB's bsxfun.

    The block's arguments are its inputs followed by its parameters, in that order: x, the scale
    s, the bias b (with ``has_bias``). Usually x is the one input and s and b are parameters, but
    s and b may be inputs too (then they get derivatives as inputs). Each dimension of s and b is
    1 or x's (MATLAB's dimensions, aligned on the left: a 1 x 1 x C scale is one factor per channel)::

        y = x .* s + b,   dy/dx = dzdy .* s,
        dz/ds = dzdy .* x summed over the dimensions where s is 1,  dz/db likewise of dzdy.

    Parameters
    ----------
    size : sequence of ints, default ()
        Shape of s and b, which ``init_params`` makes (ones and zeros); () for not set.
    has_bias : bool, default True
        Whether there is a bias b (the third argument).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Scale
    >>> x = np.ones((2, 2, 3))
    >>> s, b = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 3), np.zeros((1, 1, 3))
    >>> Scale().forward([x], [s, b])[0][0, 0].tolist()
    [1.0, 2.0, 3.0]
    >>> Scale().backward([x], [s, b], [np.ones((2, 2, 3))])[1][0].ravel().tolist()
    [4.0, 4.0, 4.0]
    """

    type_name = "dagnn.Scale"
    saved_properties = ("size", "has_bias")

    def __init__(self, size=(), has_bias=True):
        self.size = size
        self.has_bias = has_bias

    size = Property(_sizes, "Shape of the scale and bias (for init_params); () when not set.")
    has_bias = Property(flag, "Whether there is a bias (the third argument).")

    def _arguments(self, inputs, params):
        """x, s (and b) as float arrays of one dtype whose dimensions broadcast to x's."""
        names = ("X", "SCALE", "BIAS")[:3 if self.has_bias else 2]
        args = list(inputs) + list(params)
        if len(args) < len(names):
            raise ValueError(f"Scale: needs {len(names)} arguments (x, scale{', bias' if self.has_bias else ''}) "
                             f"as inputs and parameters, got {len(args)}")
        arrays = {name: as_float_array(arg, name, "Scale") for name, arg in zip(names, args)}
        common_dtype("Scale", **arrays)
        x = arrays["X"]
        for name in names[1:]:
            a = arrays[name]
            ndim = max(a.ndim, x.ndim)
            if any(d not in (1, e) for d, e in zip(_matlab_view(a, ndim).shape, _matlab_view(x, ndim).shape)):
                raise ValueError(f"Scale: {name} has shape {a.shape}, which does not broadcast to X's {x.shape} "
                                 "(each dimension must be 1 or X's)")
        return [arrays[name] for name in names]

    def forward(self, inputs, params):
        x, *factors = self._arguments(inputs, params)
        ndim = max(a.ndim for a in (x, *factors))
        y = _matlab_view(x, ndim) * _matlab_view(factors[0], ndim)
        if self.has_bias:
            y += _matlab_view(factors[1], ndim)
        return [np.asfortranarray(y.reshape(x.shape))]

    def backward(self, inputs, params, der_outputs):
        x, *factors = self._arguments(inputs, params)
        dy = np.asarray(der_outputs[0]).reshape(x.shape)
        ndim = max(a.ndim for a in (x, *factors))

        def summed(values, like):
            # Over the dimensions where the factor is 1, in double (numpy's fixed order), as a factor.
            axes = tuple(k for k, d in enumerate(_matlab_view(like, ndim).shape) if d == 1)
            total = _matlab_view(values, ndim).sum(axis=axes, keepdims=True, dtype=np.float64)
            return np.asfortranarray(total.astype(like.dtype).reshape(like.shape))

        ders = [np.asfortranarray((_matlab_view(dy, ndim) * _matlab_view(factors[0], ndim)).reshape(x.shape)),
                summed(dy * x, factors[0])]
        if self.has_bias:
            ders.append(summed(dy, factors[1]))
        return ders[:len(inputs)], ders[len(inputs):]

    def init_params(self, rng):
        if not self.size:
            raise ValueError("Scale: size is not set; give Scale(size=...) the shape of the scale and bias")
        ones = np.ones(self.size, dtype=np.float32, order="F")
        return [ones, np.zeros(self.size, dtype=np.float32, order="F")] if self.has_bias else [ones]
