"""The spatial-normalisation layer kind (``vl_nnspnorm``): SimpleNN's ``'spnorm'`` and DagNN's
``dagnn.SpatialNorm``.

MatConvNet's ``DagNN.fromSimpleNN`` has no case for ``'spnorm'``; cnnx converts it.

Examples
--------
>>> from cnnx.layers import LAYER_TYPES, SpatialNorm
>>> LAYER_TYPES['spnorm'].block is SpatialNorm
True
"""
from ..normalize import SPNORM_PARAM, vl_nnspnorm
from .base import ElementWise, Property, param_vector, require
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class SpatialNorm(ElementWise):
    """Spatial normalisation ``x * (1 + alpha * mean of x^2 around)^-beta`` (``vl_nnspnorm``).

    Parameters
    ----------
    param : sequence of 4 numbers, default (2, 2, 10, 2)
        ``[PH PW alpha beta]``: the window and the constants (MatConvNet's default).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import SpatialNorm
    >>> SpatialNorm(param=[3, 3, 0.75, 0.5]).forward([np.full((2, 2), 2.0)], [])[0]
    array([[1., 1.],
           [1., 1.]])
    """

    type_name = "dagnn.SpatialNorm"
    saved_properties = ("param",)

    def __init__(self, param=(2, 2, 10.0, 2.0)):
        self.param = param

    param = Property(param_vector(SPNORM_PARAM), "[PH PW alpha beta]: the window and the constants.")

    def forward(self, inputs, params):
        return [vl_nnspnorm(inputs[0], self.param)]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnspnorm(inputs[0], self.param, der_outputs[0])], []


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _spnorm_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = vl_nnspnorm(res_i["x"], layer["param"])


def _spnorm_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = vl_nnspnorm(res_i["x"], layer["param"], res_ip1["dzdx"])


def _spnorm_check(layer, where):
    require(where, layer, "param", "[PH PW alpha beta] of vl_nnspnorm; vl_simplenn_tidy has no default for it")
    SPNORM_PARAM.parse(where, "param", layer["param"])


register_layer_type("spnorm", _spnorm_forward, _spnorm_backward, check=_spnorm_check, block=SpatialNorm,
                    to_dagnn=lambda layer: Conversion(SpatialNorm(param=layer["param"])))
