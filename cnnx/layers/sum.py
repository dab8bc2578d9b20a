"""The elementwise sum layer kind: DagNN's ``dagnn.Sum`` (SimpleNN has none).

Examples
--------
>>> from cnnx.layers.sum import Sum
>>> Sum.type_name
'dagnn.Sum'
"""
import numpy as np

from .base import ElementWise
from .registry import register_block


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


@register_block
class Sum(ElementWise):
    """Elementwise sum of any number of inputs of one shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Sum
    >>> Sum().forward([np.ones(3), np.full(3, 2.0)], [])[0]
    array([3., 3., 3.])
    """

    type_name = "dagnn.Sum"

    def forward(self, inputs, params):
        first = np.asarray(inputs[0])
        for i, x in enumerate(inputs[1:], start=1):
            if np.shape(x) != first.shape:
                raise ValueError(f"Sum: input {i} has shape {np.shape(x)} but input 0 has {first.shape}")
            if np.asarray(x).dtype != first.dtype:
                raise TypeError(f"Sum: input {i} is {np.asarray(x).dtype} but input 0 is {first.dtype}")
        total = np.array(first, order="F", copy=True)
        for x in inputs[1:]:
            total += x
        return [total]

    def backward(self, inputs, params, der_outputs):
        return [der_outputs[0]] * len(inputs), []
