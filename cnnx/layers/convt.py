"""The transposed convolution layer kind (``vl_nnconvt``): SimpleNN's ``'convt'`` and DagNN's
``dagnn.ConvTranspose``.

Examples
--------
>>> from cnnx.layers.convt import ConvTranspose
>>> ConvTranspose(size=(4, 4, 8, 3), upsample=2, crop=1).get_output_sizes([(5, 5, 3, 2)], [None])
[(10, 10, 8, 2)]
"""
import math
from functools import partial

import numpy as np

from .._options import Option, parse_options, without_gpu_options
from ..convt import vl_nnconvt
from .base import PAD4, PAIR, Layer, Property, WithOpts, cell, filter_bank_size, flag, int_tuple, weight
from .conv import check_filter_bank
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class ConvTranspose(WithOpts, Layer):
    """Transposed convolution block (``vl_nnconvt``): input x, parameters filters (and biases), output y.

    Parameters
    ----------
    size : sequence of 4 ints, default (0, 0, 0, 0)
        Filter bank shape (FH, FW, K, C) (``vl_nnconvt``'s layout: K outputs per group, C the input
        channels), used by ``init_params`` and for sizes before the filters have values. Shorter
        MATLAB sizes are padded with 1s.
    upsample : int or sequence of 2 ints, default 1
        [UY, UX] upsampling factor, each >= 1.
    crop : int or sequence of 2 or 4 ints, default 0
        [TOP, BOTTOM, LEFT, RIGHT] output cropping, each >= 0; [c1 c2] means [c1 c1 c2 c2].
    num_groups : int, default 1
        Filter groups G; the output has K * G channels.
    has_bias : bool, default True
        Whether the layer has a second parameter, the biases (K * G elements).
    opts : sequence, default ()
        More ``vl_nnconvt`` name/value options (MatConvNet's cuDNN switches are ignored).

    Notes
    -----
    MatConvNet's ``getOutputSizes`` and ``initParams`` use K (``size(3)``) output channels even
    with groups; cnnx uses the K * G channels ``vl_nnconvt`` produces and takes biases for.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import ConvTranspose
    >>> block = ConvTranspose(size=(2, 2, 1, 1), upsample=2, has_bias=False)
    >>> y = block.forward([np.arange(1.0, 5.0).reshape(2, 2, 1)], [np.ones((2, 2))])[0]
    >>> y.shape
    (4, 4, 1)
    >>> y[:, :, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]])
    """

    type_name = "dagnn.ConvTranspose"
    param_ndims = (4, 0)
    saved_properties = ("size", "has_bias", "upsample", "crop", "num_groups", "opts")

    def __init__(self, size=(0, 0, 0, 0), upsample=1, crop=0, num_groups=1, has_bias=True, opts=()):
        self.size = size
        self.upsample = upsample
        self.crop = crop
        self.num_groups = num_groups
        self.has_bias = has_bias
        self.opts = opts

    size = Property(partial(filter_bank_size, layout="FH FW K C"), "(FH, FW, K, C) shape of the filter bank.")
    upsample = Property(partial(int_tuple, lengths=PAIR, minimum=1), "[UY, UX] upsampling (1 value for both).")
    crop = Property(partial(int_tuple, lengths=PAD4, minimum=0),
                    "[top, bottom, left, right] cropping; 1 value for all, or [c1 c2] = [c1 c1 c2 c2].")
    num_groups = Property(lambda owner, name, value: int_tuple(owner, name, value, {1: (0,)}, 1)[0],
                          "Number of filter groups G.")
    has_bias = Property(flag, "Whether the second parameter (biases) is used.")

    def _call(self, x, params, *dzdy, **flags):
        if self.has_bias and len(params) < 2:
            raise ValueError("ConvTranspose: has_bias is true but the layer has no second parameter (the biases)")
        return vl_nnconvt(x, params[0], params[1] if self.has_bias else None, *dzdy, *self.block_opts(),
                          upsample=self.upsample, crop=self.crop, num_groups=self.num_groups, **flags)

    def forward(self, inputs, params):
        return [self._call(inputs[0], params)]

    def backward(self, inputs, params, der_outputs):
        dx, df, db = self._call(inputs[0], params, der_outputs[0], no_der_data=not self.input_der_needed(0))
        return [dx], ([df, db] if self.has_bias else [df])

    def init_params(self, rng):
        # MatConvNet: randn * sqrt(2 / (FH FW C)), zero biases, single precision.
        if min(self.size) < 1:
            raise ValueError(f"ConvTranspose: size {self.size} is not set; give ConvTranspose(size=(FH, FW, K, C))")
        scale = np.float32(math.sqrt(2.0 / (self.size[0] * self.size[1] * self.size[3])))
        count = int(np.prod(self.size))
        filters = (rng.standard_normal(count, dtype=np.float32) * scale).reshape(self.size, order="F")
        if not self.has_bias:
            return [filters]
        return [filters, np.zeros((self.size[2] * self.num_groups, 1), dtype=np.float32)]

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or input_sizes[0] is None:
            return [None]
        size = param_sizes[0] if param_sizes and param_sizes[0] is not None else self.size
        return [convt_output_size(input_sizes[0], size, self.upsample, self.crop, self.num_groups)]


def convt_output_size(x_size, f_size, upsample, crop, num_groups):
    """(YH, YW, K * G, N) of ``vl_nnconvt`` on x of ``x_size`` with filters of ``f_size``."""
    height = upsample[0] * (x_size[0] - 1) + f_size[0] - crop[0] - crop[1]
    width = upsample[1] * (x_size[1] - 1) + f_size[1] - crop[2] - crop[3]
    return (height, width, f_size[2] * num_groups, x_size[3])


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


_CONVT_OPTIONS = {"upsample": Option("pair"), "crop": Option("pad4"),
                  "numGroups": Option("int", low=1, display="numGroups")}


def _convt_call(layer, res_i, *dzdy, **flags):
    return vl_nnconvt(res_i["x"], weight(layer, 0), weight(layer, 1), *dzdy, *without_gpu_options(layer["opts"]),
                      upsample=layer["upsample"], crop=layer["crop"], num_groups=layer["numGroups"], **flags)


def _convt_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = _convt_call(layer, res_i)


def _convt_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"], dzdf, dzdb = _convt_call(layer, res_i, res_ip1["dzdx"], no_der_data=not ctx["der_input"])
    return [dzdf, dzdb]


def _convt_check(layer, where):
    # The number of biases depends on numGroups, checked after this: vl_nnconvt checks it.
    check_filter_bank(where, layer, "FH x FW x K x C")


def _convt_settings(layer):
    """The layer's upsample, crop and numGroups as vl_nnconvt reads them (tuples, an int)."""
    return parse_options("vl_simplenn", (), {field: layer[field] for field in _CONVT_OPTIONS}, _CONVT_OPTIONS)


def _convt_geometry(layer):
    filters = weight(layer, 0)
    if filters is None:
        return {"num_filters": None, "filter_depth": 0}
    shape = filters.shape + (1,) * (4 - filters.ndim)
    return {"num_filters": shape[2] * _convt_settings(layer)["numGroups"], "filter_depth": shape[3]}


def _convt_data_size(layer, in_size, out_size):
    # Not the display's sliding-window size: the output grows by the upsampling.
    filters = weight(layer, 0)
    if filters is None:
        return out_size
    settings = _convt_settings(layer)
    return list(convt_output_size(in_size, filters.shape + (1,) * (4 - filters.ndim), settings["upsample"],
                                  settings["crop"], settings["numGroups"]))


def _convt_to_dagnn(layer):
    has_bias = weight(layer, 1) is not None
    block = ConvTranspose(size=np.shape(layer["weights"][0]), upsample=layer["upsample"], crop=layer["crop"],
                          num_groups=layer["numGroups"], has_bias=has_bias, opts=cell(layer["opts"]))
    return Conversion(block, ("f", "b") if has_bias else ("f",))


register_layer_type(
    "convt", _convt_forward, _convt_backward,
    defaults={"crop": 0, "upsample": 1, "numGroups": 1, "opts": []}, options=_CONVT_OPTIONS,
    check=_convt_check, geometry=_convt_geometry, data_size=_convt_data_size, weight_ndims=ConvTranspose.param_ndims,
    block=ConvTranspose, to_dagnn=_convt_to_dagnn, backward_reads_output=False,
)
