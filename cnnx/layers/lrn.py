"""The LRN layer kind (``vl_nnnormalize``): SimpleNN's ``'normalize'`` (also spelt ``'lrn'``, as
``vl_simplenn`` accepts both) and DagNN's ``dagnn.LRN``.

Examples
--------
>>> from cnnx.layers import LAYER_TYPES, LRN
>>> LAYER_TYPES['normalize'].block is LRN and LAYER_TYPES['lrn'].block is LRN
True
"""
from ..normalize import LRN_PARAM, vl_nnnormalize
from .base import ElementWise, Property, param_vector
from .registry import Conversion, register_layer_type

# MatConvNet's default (vl_simplenn_tidy and dagnn.LRN): AlexNet's window of 5 with Caffe's
# alpha 1e-4 divided by the window size.
DEFAULT_PARAM = (5, 1.0, 0.0001 / 5, 0.75)


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class LRN(ElementWise):
    """Local response normalisation across channels (``vl_nnnormalize``).

    Parameters
    ----------
    param : sequence of 4 numbers, default (5, 1, 0.0001/5, 0.75)
        ``[N kappa alpha beta]``: the window of N channels and the normalisation's constants.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import LRN
    >>> LRN(param=[3, 0, 1, 0.5]).forward([np.array([3.0, 4.0]).reshape(1, 1, 2)], [])[0].ravel()
    array([0.6, 0.8])
    """

    type_name = "dagnn.LRN"
    saved_properties = ("param",)

    def __init__(self, param=DEFAULT_PARAM):
        self.param = param

    param = Property(param_vector(LRN_PARAM), "[N kappa alpha beta]: window size and constants of vl_nnnormalize.")

    def forward(self, inputs, params):
        return [vl_nnnormalize(inputs[0], self.param)]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnnormalize(inputs[0], self.param, der_outputs[0])], []


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _lrn_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = vl_nnnormalize(res_i["x"], layer["param"])


def _lrn_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = vl_nnnormalize(res_i["x"], layer["param"], res_ip1["dzdx"])


def _lrn_check(layer, where):
    LRN_PARAM.parse(where, "param", layer["param"])


def _lrn_to_dagnn(layer):
    return Conversion(LRN(param=layer["param"]))


for _name, _abbreviation in (("normalize", "norm"), ("lrn", "lrn")):  # vl_simplenn_display's names
    register_layer_type(_name, _lrn_forward, _lrn_backward, defaults={"param": list(DEFAULT_PARAM)},
                        check=_lrn_check, abbreviation=_abbreviation, block=LRN, to_dagnn=_lrn_to_dagnn)
