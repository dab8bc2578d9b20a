"""The pooling layer kind (``vl_nnpool``): SimpleNN's ``'pool'`` and DagNN's ``dagnn.Pooling``.

Examples
--------
>>> from cnnx.layers.pool import Pooling
>>> Pooling(pool_size=2, stride=2).get_output_sizes([(8, 8, 3, 1)], [])
[(4, 4, 3, 1)]
"""
from functools import partial

import numpy as np

from .._options import Option, without_gpu_options
from .._shapes import window_output_size
from ..pool import PoolWinners, vl_nnpool
from .base import Filter, PAIR, Property, WithOpts, cell, choice, int_tuple, pair, property_error, require
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


def _no_dilation(owner, name, value):
    # Inherited from dagnn.Filter and saved by MatConvNet, but vl_nnpool has no dilation.
    expected = "1 (vl_nnpool has no dilation)"
    if int_tuple(owner, name, value, PAIR, 1, expected=expected) != (1, 1):
        raise property_error(owner, name, expected, value)
    return (1, 1)


class Pooling(WithOpts, Filter):
    """Pooling block (``vl_nnpool``): max or average over windows of each channel.

    Parameters
    ----------
    method : {'max', 'avg'}
        Pooling method.
    pool_size : int or sequence of 2 ints, default (1, 1)
        Window [PH, PW].
    pad, stride : int or sequence
        As ``vl_nnpool``'s options.
    opts : sequence, default ()
        More ``vl_nnpool`` name/value options (cuDNN switches are ignored).
    dilate : 1
        Kept for MatConvNet's files (dagnn.Filter has it); must be 1.

    Attributes
    ----------
    winners : cnnx.pool.PoolWinners or None
        Max pooling in a network that is not in test mode: where the last forward call found each
        window's maximum, to which backward routes the derivatives instead of finding them again
        in the input.
    input_size : tuple or None
        Average pooling in a network that is not in test mode: the last forward call's input
        shape, all its backward needs.
    backward_reads_values : bool
        False in a network that is not in test mode: backward then reads neither the input nor
        the output (the winners or the input's shape stand in for the input), so that a network
        conserving memory frees the input after forward.

    Examples
    --------
    >>> from cnnx.dagnn import Pooling
    >>> Pooling(method='max', pool_size=3, pad=(0, 1, 0, 1), stride=2).get_output_sizes(
    ...     [(32, 32, 32, 100)], [])
    [(16, 16, 32, 100)]
    """

    type_name = "dagnn.Pooling"
    saved_properties = ("method", "pool_size", "opts", "pad", "stride", "dilate")

    def __init__(self, method="max", pool_size=1, pad=0, stride=1, opts=(), dilate=1):
        self.method = method
        self.pool_size = pool_size
        self.pad = pad
        self.stride = stride
        self.opts = opts
        self.dilate = dilate
        self.winners = None
        self.input_size = None

    dilate = Property(_no_dilation, "[1, 1]: kept for MatConvNet's files (dagnn.Filter has it).")
    method = Property(partial(choice, choices=("max", "avg")), "'max' or 'avg'.")
    pool_size = Property(partial(int_tuple, lengths=PAIR, minimum=1), "[PH, PW] pooling window.")

    def _options(self):
        return dict(pad=self.pad, stride=self.stride, method=self.method)

    @property
    def backward_reads_values(self):
        # In a network about to be back-propagated (not in test mode), forward keeps what backward
        # needs of the input: max pooling its winners (backward then routes the derivatives to
        # them instead of finding them again), average pooling the input's shape.
        return self.net is None or self._is_test_mode()

    def forward(self, inputs, params):
        self.winners = self.input_size = None
        if not self.backward_reads_values and self.method == "max":
            y, self.winners = vl_nnpool(inputs[0], self.pool_size, *self.block_opts(), winners=True,
                                        **self._options())
            return [y]
        if not self.backward_reads_values:
            self.input_size = np.shape(inputs[0])
        return [vl_nnpool(inputs[0], self.pool_size, *self.block_opts(), **self._options())]

    def backward(self, inputs, params, der_outputs):
        if self.winners is not None:
            return [vl_nnpool(None, self.pool_size, der_outputs[0], *self.block_opts(), winners=self.winners,
                              **self._options())], []
        if self.input_size is not None:
            return [vl_nnpool(None, self.pool_size, der_outputs[0], *self.block_opts(), input_size=self.input_size,
                              **self._options())], []
        return [vl_nnpool(inputs[0], self.pool_size, der_outputs[0], *self.block_opts(),
                          **self._options())], []

    def reset(self):
        self.winners = self.input_size = None

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or input_sizes[0] is None:
            return [None]
        yh, yw = window_output_size(input_sizes[0][0], input_sizes[0][1], self.pool_size, self.pad, self.stride)
        return [(yh, yw, input_sizes[0][2], input_sizes[0][3])]


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


_POOL_OPTIONS = {"pool": Option("pair"), "pad": Option("pad4"), "stride": Option("pair"),
                 "method": Option("choice", choices=("max", "avg"))}


def _pool_call(layer, x, *dzdy, **winners):
    return vl_nnpool(x, layer["pool"], *dzdy, *without_gpu_options(layer["opts"]), pad=layer["pad"],
                     stride=layer["stride"], method=layer["method"], **winners)


def _pool_forward(layer, res_i, res_ip1, ctx):
    # About to be back-propagated, a pooling keeps in aux all its backward needs of its input, so
    # that conserving memory frees the input early: max pooling its winners (backward then routes
    # the derivatives to them instead of finding them again), average pooling the input's shape.
    x = res_i["x"]
    if not ctx["backward"]:
        res_ip1["x"], res_ip1["aux"] = _pool_call(layer, x), None
    elif str(layer["method"]).lower() == "max":
        res_ip1["x"], res_ip1["aux"] = _pool_call(layer, x, winners=True)
    else:
        res_ip1["x"], res_ip1["aux"] = _pool_call(layer, x), np.shape(x)


def _pool_backward(layer, res_i, res_ip1, ctx):
    kept, dzdy = res_ip1["aux"], res_ip1["dzdx"]
    if isinstance(kept, PoolWinners):
        res_i["dzdx"] = _pool_call(layer, None, dzdy, winners=kept)
    elif kept is not None:
        res_i["dzdx"] = _pool_call(layer, None, dzdy, input_size=kept)
    else:  # a res whose forward was not back-propagated (SkipForward)
        res_i["dzdx"] = _pool_call(layer, res_i["x"], dzdy)


def _pool_check(layer, where):
    require(where, layer, "pool", "the pooling window size, scalar or [PH, PW]")


def _pool_abbreviation(layer):
    return "apool" if layer["method"].lower() == "avg" else "mpool"


def _pool_to_dagnn(layer):
    return Conversion(Pooling(method=layer["method"], pool_size=layer["pool"], pad=layer["pad"],
                              stride=layer["stride"], opts=cell(layer["opts"])))


# MatConvNet's tidy never fills 'method' (a duplicated switch case); cnnx fills vl_nnpool's default.
register_layer_type(
    "pool", _pool_forward, _pool_backward,
    defaults={"pad": 0, "stride": 1, "method": "max", "opts": []}, options=_POOL_OPTIONS,
    check=_pool_check, geometry=lambda layer: {"support": pair(layer["pool"])},
    abbreviation=_pool_abbreviation, block=Pooling, to_dagnn=_pool_to_dagnn, backward_from_output=lambda layer: True,
    backward_reads_output=False, fresh_results=True,
)
