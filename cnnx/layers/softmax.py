"""The softmax layer kind (``vl_nnsoftmax``): SimpleNN's ``'softmax'`` and DagNN's ``dagnn.SoftMax``.

Examples
--------
>>> from cnnx.layers import LAYER_TYPES, SoftMax
>>> LAYER_TYPES['softmax'].block is SoftMax
True
"""
from ..softmax import vl_nnsoftmax
from .base import ElementWise
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class SoftMax(ElementWise):
    """Softmax over the channels (``vl_nnsoftmax``); no properties, no parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import SoftMax
    >>> SoftMax().forward([np.zeros((1, 1, 4))], [])[0].ravel()
    array([0.25, 0.25, 0.25, 0.25])
    """

    type_name = "dagnn.SoftMax"
    canonical_output = "prob"  # DagNN.from_simplenn(canonical_names=True), as MatConvNet's

    def forward(self, inputs, params):
        return [vl_nnsoftmax(inputs[0])]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnsoftmax(inputs[0], der_outputs[0])], []


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _softmax_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = vl_nnsoftmax(res_i["x"])


def _softmax_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = vl_nnsoftmax(res_i["x"], res_ip1["dzdx"])


register_layer_type("softmax", _softmax_forward, _softmax_backward, abbreviation="softmx", block=SoftMax,
                    to_dagnn=lambda layer: Conversion(SoftMax()))
