"""The region-of-interest pooling layer kind (``vl_nnroipool``): DagNN's ``dagnn.ROIPooling``
(SimpleNN has none).

Examples
--------
>>> from cnnx.layers.roipool import ROIPooling
>>> ROIPooling(subdivisions=[7, 7]).get_output_sizes([(14, 14, 512, 2), (5, 64, 1, 1)], [])
[(7, 7, 512, 64)]
"""
from functools import partial

import numpy as np

from ..roipool import roi_transform, vl_nnroipool
from .base import PAIR, Layer, Property, choice, flag, int_tuple, property_error
from .registry import register_block


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


def _transform(owner, name, value):
    """1, 2 or 6 finite numbers (a 2 x 3 matrix read in MATLAB's column order), as given."""
    expected = "1, 2 or 6 finite numbers (a scale, [Tu Tv] or a 2 x 3 matrix)"
    try:
        flat = np.asarray(value, dtype=np.float64).reshape(-1, order="F")
        roi_transform(flat, owner, name)
    except (TypeError, ValueError) as error:
        raise property_error(owner, name, expected, value, type(error)) from None
    return tuple(float(v) for v in flat)


@register_block
class ROIPooling(Layer):
    """Region-of-interest pooling block (``vl_nnroipool``): inputs x and rois, output y.

    y is SH x SW x C x K for K regions (``rois`` holds 5 K numbers), or 1 x 1 x (SH SW C) x K with
    ``flatten`` (which ``get_output_sizes`` accounts for; MatConvNet's does not). The regions get no
    derivative.

    Parameters
    ----------
    method : {'max', 'avg'}, default 'max'
        Pooling method.
    subdivisions : int or sequence of 2 ints, default (6, 6)
        [SH, SW] tiles per region.
    transform : float or sequence, default 1
        ``vl_nnroipool``'s Transform: a scale, [Tu Tv] or a 2 x 3 matrix (kept in column order).
    flatten : bool, default False
        Reshape y to 1 x 1 x (SH SW C) x K.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import ROIPooling
    >>> x = np.arange(16.0).reshape(4, 4, 1, 1, order="F")
    >>> rois = np.array([[1.0, 1, 1, 2, 2], [1.0, 3, 3, 4, 4]]).T
    >>> ROIPooling(subdivisions=1, flatten=True).forward([x, rois], [])[0].ravel().tolist()
    [5.0, 15.0]
    """

    type_name = "dagnn.ROIPooling"
    saved_properties = ("method", "subdivisions", "transform", "flatten")

    def __init__(self, method="max", subdivisions=(6, 6), transform=1.0, flatten=False):
        self.method = method
        self.subdivisions = subdivisions
        self.transform = transform
        self.flatten = flatten

    method = Property(partial(choice, choices=("max", "avg")), "'max' or 'avg'.")
    subdivisions = Property(partial(int_tuple, lengths=PAIR, minimum=1), "[SH, SW] tiles per region.")
    transform = Property(_transform, "Transform of the region corners (vl_nnroipool's).")
    flatten = Property(flag, "Reshape the output to 1 x 1 x (SH SW C) x K.")

    def _options(self):
        return dict(method=self.method, subdivisions=self.subdivisions, transform=self.transform)

    def forward(self, inputs, params):
        y = vl_nnroipool(inputs[0], inputs[1], **self._options())
        return [y.reshape(1, 1, -1, y.shape[3], order="F") if self.flatten else y]

    def backward(self, inputs, params, der_outputs):
        dy = der_outputs[0]
        if self.flatten:
            dy = np.reshape(dy, self.subdivisions + (-1, np.size(inputs[1]) // 5), order="F")
        return [vl_nnroipool(inputs[0], inputs[1], dy, **self._options()), None], []

    def get_output_sizes(self, input_sizes, param_sizes):
        if len(input_sizes) < 2 or input_sizes[0] is None or input_sizes[1] is None:
            return [None]
        regions = int(np.prod(input_sizes[1])) // 5
        size = self.subdivisions + (input_sizes[0][2], regions)
        return [(1, 1, size[0] * size[1] * size[2], regions) if self.flatten else size]
