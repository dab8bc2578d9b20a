"""The crop layer kind (``vl_nncrop``): DagNN's ``dagnn.Crop`` (SimpleNN has none).

Examples
--------
>>> from cnnx.layers.crop import Crop
>>> Crop(crop=(1, 2)).get_output_sizes([(12, 12, 3, 1), (8, 8, 21, 1)], [])
[(8, 8, 3, 1)]
"""
from functools import partial

import numpy as np

from ..crop import vl_nncrop
from .base import PAIR, ElementWise, Property, int_tuple
from .registry import register_block


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


def _size4(shape):
    return tuple(shape) + (1,) * (4 - len(shape))


@register_block
class Crop(ElementWise):
    """Crop the first input to the height and width of the second (FCN's crop layer).

    The input x1 (H1 x W1) loses ``dv = H1 - H2`` rows and ``du = W1 - W2`` columns, where H2 x W2
    is the size of the second input x2 (only its size is read; it gets no derivative). ``crop``
    [cv, cu] says how many of them come off the top and the left at most: the top loses
    ``min(cv, dv)`` rows and the bottom the rest, and likewise for the columns. The output is
    ``vl_nncrop(x1, [top, bottom, left, right])``.

    Parameters
    ----------
    crop : int or sequence of 2 ints, default (0, 0)
        [cv, cu], each >= 0 (1 value for both).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Crop
    >>> x1 = np.arange(16.0).reshape(4, 4, order="F")
    >>> Crop(crop=1).forward([x1, np.zeros((2, 2))], [])[0]
    array([[ 5.,  9.],
           [ 6., 10.]])
    """

    type_name = "dagnn.Crop"
    saved_properties = ("crop",)

    def __init__(self, crop=0):
        self.crop = crop

    crop = Property(partial(int_tuple, lengths=PAIR, minimum=0), "[cv, cu] most rows and columns taken off the top "
                                                                 "and the left.")

    def adapted_crop(self, size1, size2):
        """[top, bottom, left, right] that crops an input of ``size1`` to the height and width of ``size2``."""
        if size1[0] < size2[0] or size1[1] < size2[1]:
            raise ValueError(f"Crop: input 0 is {size1[0]} x {size1[1]}, smaller than input 1 "
                             f"({size2[0]} x {size2[1]}); it can only be cropped to a smaller size")
        rows, cols = size1[0] - size2[0], size1[1] - size2[1]
        top, left = min(self.crop[0], rows), min(self.crop[1], cols)
        return [top, rows - top, left, cols - left]

    def forward(self, inputs, params):
        return [vl_nncrop(inputs[0], self.adapted_crop(_size4(np.shape(inputs[0])), _size4(np.shape(inputs[1]))))]

    def backward(self, inputs, params, der_outputs):
        crop = self.adapted_crop(_size4(np.shape(inputs[0])), _size4(np.shape(inputs[1])))
        return [vl_nncrop(inputs[0], crop, der_outputs[0]), None], []

    def get_output_sizes(self, input_sizes, param_sizes):
        if len(input_sizes) < 2 or input_sizes[0] is None or input_sizes[1] is None:
            return [None]
        top, bottom, left, right = self.adapted_crop(input_sizes[0], input_sizes[1])
        size = tuple(input_sizes[0])
        return [(size[0] - top - bottom, size[1] - left - right) + size[2:]]
