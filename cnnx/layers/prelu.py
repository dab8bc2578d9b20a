"""The parametric ReLU layer kind (``vl_nnprelu``): SimpleNN's ``'prelu'`` and DagNN's ``dagnn.PReLU``.

Examples
--------
>>> from cnnx.layers.prelu import PReLU
>>> PReLU().saved_properties
('num_channels',)
"""
import numpy as np

from ..activations import vl_nnprelu
from .base import ElementWise, Property, check_array, check_weight_count, int_tuple
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class PReLU(ElementWise):
    """Parametric ReLU block (``vl_nnprelu``, not in MatConvNet): one learnt slope per channel.

    Parameters
    ----------
    num_channels : int, default 1
        Number of slopes ``init_params`` creates (1 = one slope shared by all channels). The slopes
        start at 0.25 (He et al., 2015).

    Examples
    --------
    >>> from cnnx.dagnn import PReLU
    >>> PReLU(num_channels=3).init_params(None)[0].ravel()
    array([0.25, 0.25, 0.25], dtype=float32)
    """

    type_name = "dagnn.PReLU"
    saved_properties = ("num_channels",)

    def __init__(self, num_channels=1):
        self.num_channels = num_channels

    num_channels = Property(lambda owner, name, value: int_tuple(owner, name, value, {1: (0,)}, 1)[0],
                            "Number of slopes.")

    def forward(self, inputs, params):
        return [vl_nnprelu(inputs[0], params[0])]

    def backward(self, inputs, params, der_outputs):
        dx, da = vl_nnprelu(inputs[0], params[0], der_outputs[0])
        return [dx], [da]

    def init_params(self, rng):
        return [np.full((self.num_channels, 1), 0.25, dtype=np.float32)]


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _prelu_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = vl_nnprelu(res_i["x"], layer["weights"][0])


def _prelu_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"], dzda = vl_nnprelu(res_i["x"], layer["weights"][0], res_ip1["dzdx"])
    return [dzda]


def _prelu_check(layer, where):
    check_weight_count(where, layer, 1, "[A] (the slopes)")
    check_array(where, "the slopes weights[0]", layer["weights"][0])
    if layer["weights"][0].size == 0:
        raise ValueError(f"{where}: the slopes weights[0] are empty")


def _prelu_to_dagnn(layer):
    return Conversion(PReLU(num_channels=np.size(layer["weights"][0])), ("a",))


register_layer_type("prelu", _prelu_forward, _prelu_backward, check=_prelu_check, block=PReLU,
                    to_dagnn=_prelu_to_dagnn)
