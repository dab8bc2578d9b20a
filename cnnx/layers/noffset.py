"""The norm-offset layer kind (``vl_nnnoffset``): SimpleNN's ``'noffset'`` and DagNN's
``dagnn.NormOffset``.

MatConvNet's ``DagNN.fromSimpleNN`` has no case for ``'noffset'``; cnnx converts it.

Examples
--------
>>> from cnnx.layers import LAYER_TYPES, NormOffset
>>> LAYER_TYPES['noffset'].block is NormOffset
True
"""
from ..normalize import NOFFSET_PARAM, vl_nnnoffset
from .base import ElementWise, Property, param_vector, require
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class NormOffset(ElementWise):
    """Norm-dependent offset ``x - k * (sum_c x^2)^alpha`` (``vl_nnnoffset``).

    Parameters
    ----------
    param : sequence of 2 numbers, default (1, 0.5)
        ``[k alpha]`` (MatConvNet's default: subtract the pixel's L2 norm).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import NormOffset
    >>> NormOffset().forward([np.array([3.0, 4.0]).reshape(1, 1, 2)], [])[0].ravel()
    array([-2., -1.])
    """

    type_name = "dagnn.NormOffset"
    saved_properties = ("param",)

    def __init__(self, param=(1.0, 0.5)):
        self.param = param

    param = Property(param_vector(NOFFSET_PARAM), "[k alpha]: the offset's scale and power.")

    def forward(self, inputs, params):
        return [vl_nnnoffset(inputs[0], self.param)]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnnoffset(inputs[0], self.param, der_outputs[0])], []


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _noffset_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = vl_nnnoffset(res_i["x"], layer["param"])


def _noffset_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = vl_nnnoffset(res_i["x"], layer["param"], res_ip1["dzdx"])


def _noffset_check(layer, where):
    require(where, layer, "param", "[k alpha] of vl_nnnoffset; vl_simplenn_tidy has no default for it")
    NOFFSET_PARAM.parse(where, "param", layer["param"])


register_layer_type("noffset", _noffset_forward, _noffset_backward, check=_noffset_check, block=NormOffset,
                    to_dagnn=lambda layer: Conversion(NormOffset(param=layer["param"])))
