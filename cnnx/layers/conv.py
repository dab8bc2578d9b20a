"""The convolution layer kind (``vl_nnconv``): SimpleNN's ``'conv'`` and DagNN's ``dagnn.Conv``.

Examples
--------
>>> from cnnx.layers.conv import Conv
>>> Conv(size=(3, 3, 1, 8)).init_params(__import__('numpy').random.default_rng(0))[1].shape
(8, 1)
"""
import math
from functools import partial

import numpy as np

from .._checks import is_placeholder
from .._options import Option, without_gpu_options
from .._shapes import window_output_size
from ..conv import vl_nnconv
from .base import (Filter, Property, WithOpts, cell, check_array, check_weight_count, filter_bank_size, flag, pair,
                   weight)
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class Conv(WithOpts, Filter):
    """Convolution block (``vl_nnconv``): input x, parameters filters (and biases), output y.

    Parameters
    ----------
    size : sequence of 4 ints, default (0, 0, 0, 0)
        Filter bank shape (FH, FW, FC, K), used by ``init_params`` (and for sizes before the
        filters have values). Shorter MATLAB sizes are padded with 1s.
    pad, stride, dilate : int or sequence
        As ``vl_nnconv``'s options (pad 1, 2 or 4 values; stride and dilate 1 or 2).
    has_bias : bool, default True
        Whether the layer has a second parameter, the biases (K elements).
    opts : sequence, default ()
        More ``vl_nnconv`` name/value options (MatConvNet's cuDNN switches are ignored).

    Examples
    --------
    >>> from cnnx.dagnn import Conv
    >>> Conv(size=(5, 5, 3, 32), pad=2).get_output_sizes([(32, 32, 3, 10)], [None])
    [(32, 32, 32, 10)]
    """

    type_name = "dagnn.Conv"
    param_ndims = (4, 0)
    saved_properties = ("size", "has_bias", "opts", "pad", "stride", "dilate")

    def __init__(self, size=(0, 0, 0, 0), pad=0, stride=1, dilate=1, has_bias=True, opts=()):
        self.size = size
        self.pad = pad
        self.stride = stride
        self.dilate = dilate
        self.has_bias = has_bias
        self.opts = opts

    size = Property(partial(filter_bank_size, layout="FH FW FC K"), "(FH, FW, FC, K) shape of the filter bank.")
    has_bias = Property(flag, "Whether the second parameter (biases) is used.")

    def _options(self):
        return dict(pad=self.pad, stride=self.stride, dilate=self.dilate)

    def _biases(self, params):
        if not self.has_bias:
            return None
        if len(params) < 2:
            raise ValueError("Conv: has_bias is true but the layer has no second parameter (the biases)")
        return params[1]

    def forward(self, inputs, params):
        return [vl_nnconv(inputs[0], params[0], self._biases(params), *self.block_opts(),
                          **self._options())]

    def backward(self, inputs, params, der_outputs):
        dx, df, db = vl_nnconv(inputs[0], params[0], self._biases(params), der_outputs[0],
                               *self.block_opts(), no_der_data=not self.input_der_needed(0), **self._options())
        return [dx], ([df, db] if self.has_bias else [df])

    def init_params(self, rng):
        # He et al.: randn * sqrt(2 / (FH FW FC)); zero biases; single precision, as MatConvNet.
        if min(self.size) < 1:
            raise ValueError(f"Conv: size {self.size} is not set; give Conv(size=(FH, FW, FC, K))")
        scale = np.float32(math.sqrt(2.0 / (self.size[0] * self.size[1] * self.size[2])))
        count = int(np.prod(self.size))
        filters = (rng.standard_normal(count, dtype=np.float32) * scale).reshape(self.size, order="F")
        if not self.has_bias:
            return [filters]
        return [filters, np.zeros((self.size[3], 1), dtype=np.float32)]

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or input_sizes[0] is None:
            return [None]
        size = param_sizes[0] if param_sizes and param_sizes[0] is not None else self.size
        yh, yw = window_output_size(input_sizes[0][0], input_sizes[0][1], size[:2], self.pad, self.stride,
                                    self.dilate)
        return [(yh, yw, size[3], input_sizes[0][3])]


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


_CONV_OPTIONS = {"pad": Option("pad4"), "stride": Option("pair"), "dilate": Option("pair")}


def _conv_call(layer, res_i, *dzdy, **flags):
    return vl_nnconv(res_i["x"], weight(layer, 0), weight(layer, 1), *dzdy, *without_gpu_options(layer["opts"]),
                     pad=layer["pad"], stride=layer["stride"], dilate=layer["dilate"], **flags)


def _conv_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = _conv_call(layer, res_i)


def _conv_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"], dzdf, dzdb = _conv_call(layer, res_i, res_ip1["dzdx"], no_der_data=not ctx["der_input"])
    return [dzdf, dzdb]


def check_filter_bank(where, layer, layout, bias_count=None):
    """Check the [F, B] weights of a filter-bank layer (conv, convt): F of 2 to 4 dimensions named
    by ``layout`` (``'FH x FW x FC x K'``), F and B float arrays of one dtype and, when
    ``bias_count`` is given, B with ``bias_count(shape)`` elements for F of the 4-D ``shape``."""
    check_weight_count(where, layer, 2, "[F, B]")
    filters, biases = layer["weights"]
    shape = None
    if not is_placeholder(filters):
        check_array(where, "the filters weights[0]", filters)
        if not 2 <= filters.ndim <= 4:
            raise ValueError(f"{where}: the filters weights[0] must be {layout} (2 to 4 dimensions), "
                             f"got shape {filters.shape}")
        shape = filters.shape + (1,) * (4 - filters.ndim)
    if not is_placeholder(biases):
        check_array(where, "the biases weights[1]", biases)
        if shape is not None and bias_count is not None and biases.size != bias_count(shape):
            raise ValueError(f"{where}: the biases weights[1] must have one element per filter "
                             f"({bias_count(shape)}), got shape {biases.shape}")
        if not is_placeholder(filters) and biases.dtype != filters.dtype:
            raise TypeError(f"{where}: the biases are {biases.dtype} but the filters are {filters.dtype}")


def _conv_check(layer, where):
    check_filter_bank(where, layer, "FH x FW x FC x K", lambda shape: shape[3])


def _conv_geometry(layer):
    filters = weight(layer, 0)
    dilate = pair(layer["dilate"])
    if filters is None:
        return {"support": [1, 1], "num_filters": None, "filter_depth": 0, "dilate": dilate}
    shape = tuple(filters.shape) + (1,) * (4 - filters.ndim)
    support = [(max(shape[k], 1) - 1) * dilate[k] + 1 for k in range(2)]
    return {"support": support, "num_filters": shape[3], "filter_depth": shape[2], "dilate": dilate}


def _conv_data_size(layer, in_size, out_size):
    filters = weight(layer, 0)
    if filters is not None:
        out_size[2] = filters.shape[3] if filters.ndim == 4 else 1
    return out_size


def _conv_to_dagnn(layer):
    has_bias = weight(layer, 1) is not None
    block = Conv(size=np.shape(layer["weights"][0]), pad=layer["pad"], stride=layer["stride"],
                 dilate=layer["dilate"], has_bias=has_bias, opts=cell(layer["opts"]))
    return Conversion(block, ("f", "b") if has_bias else ("f",))


register_layer_type(
    "conv", _conv_forward, _conv_backward,
    defaults={"pad": 0, "stride": 1, "dilate": 1, "opts": []}, options=_CONV_OPTIONS,
    check=_conv_check, geometry=_conv_geometry, data_size=_conv_data_size, weight_ndims=Conv.param_ndims,
    block=Conv, to_dagnn=_conv_to_dagnn, backward_reads_output=False, fresh_results=True,
)
