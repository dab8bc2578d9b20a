"""The concatenation layer kind (``vl_nnconcat``): DagNN's ``dagnn.Concat`` (SimpleNN has none).

Examples
--------
>>> from cnnx.layers.concat import Concat
>>> Concat(dim=4).dim
4
"""
from ..concat import vl_nnconcat
from .base import Layer, Property, int_tuple, property_error
from .registry import register_block


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


def _dimension(owner, name, value):
    dim = int_tuple(owner, name, value, {1: (0,)}, 1, expected="1, 2, 3 or 4")[0]
    if dim > 4:
        raise property_error(owner, name, "1, 2, 3 or 4", value)
    return dim


@register_block
class Concat(Layer):
    """Concatenation block (``vl_nnconcat``) of any number of inputs along ``dim``.

    Parameters
    ----------
    dim : int, default 3
        1-based dimension: 1 height, 2 width, 3 channels, 4 batch.

    Examples
    --------
    >>> from cnnx.dagnn import Concat
    >>> Concat().get_output_sizes([(8, 8, 16, 2), (8, 8, 32, 2)], [])
    [(8, 8, 48, 2)]
    """

    type_name = "dagnn.Concat"
    saved_properties = ("dim",)

    def __init__(self, dim=3):
        self.dim = dim

    dim = Property(_dimension, "1-based dimension to join along.")

    def forward(self, inputs, params):
        return [vl_nnconcat(inputs, self.dim)]

    def backward(self, inputs, params, der_outputs):
        return vl_nnconcat(inputs, self.dim, der_outputs[0]), []

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or any(s is None for s in input_sizes):
            return [None]
        out = list(input_sizes[0])
        out[self.dim - 1] = sum(s[self.dim - 1] for s in input_sizes)
        return [tuple(out)]
