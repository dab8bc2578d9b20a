"""The sigmoid layer kind (``vl_nnsigmoid``): SimpleNN's ``'sigmoid'`` and DagNN's ``dagnn.Sigmoid``.

Examples
--------
>>> from cnnx.layers import LAYER_TYPES, Sigmoid
>>> LAYER_TYPES['sigmoid'].block is Sigmoid
True
"""
from ..softmax import vl_nnsigmoid
from .base import ElementWise
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class Sigmoid(ElementWise):
    """Logistic sigmoid (``vl_nnsigmoid``); no properties, no parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Sigmoid
    >>> Sigmoid().forward([np.zeros((1, 2))], [])[0]
    array([[0.5, 0.5]])
    """

    type_name = "dagnn.Sigmoid"

    def forward(self, inputs, params):
        return [vl_nnsigmoid(inputs[0])]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnsigmoid(inputs[0], der_outputs[0])], []


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _sigmoid_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = vl_nnsigmoid(res_i["x"])


def _sigmoid_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = vl_nnsigmoid(res_i["x"], res_ip1["dzdx"])


register_layer_type("sigmoid", _sigmoid_forward, _sigmoid_backward, block=Sigmoid,
                    to_dagnn=lambda layer: Conversion(Sigmoid()))
