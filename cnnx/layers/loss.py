"""The loss layer kind: SimpleNN's ``'softmaxloss'`` (``vl_nnsoftmaxloss``) and ``'loss'``
(``vl_nnloss``), and DagNN's ``dagnn.Loss`` (``vl_nnloss``), which ``DagNN.from_simplenn`` makes of
both.

All take labels (SimpleNN in ``layer['class']``, DagNN as the second input) and output one number.

Examples
--------
>>> from cnnx.layers.loss import Loss
>>> Loss.label_inputs
(1,)
"""
from functools import partial

import numpy as np

from .._options import Option, without_gpu_options
from ..softmaxloss import vl_nnsoftmaxloss
from ..nnloss import LOSS_TYPES, vl_nnloss
from .base import Layer, Property, WithOpts, cell, choice, flag
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class Loss(WithOpts, Layer):
    """Loss block (``vl_nnloss``): inputs prediction and labels, output the summed loss.

    Keeps MatConvNet's running ``average`` of the loss per instance (per pixel and image) over the
    calls since the last ``reset()``, and their number ``num_averaged``.

    Parameters
    ----------
    loss : str, default 'softmaxlog'
        Loss type, one of :func:`cnnx.vl_nnloss`'s: 'softmaxlog', 'log', 'mhinge', 'mshinge',
        'classerror', 'topkerror', 'binaryerror', 'binarylog', 'logistic', 'hinge', 'l2'.
    ignore_average : bool, default False
        Do not update ``average``.
    opts : sequence, default ()
        More ``vl_nnloss`` name/value options (e.g. ``('topK', 5)``, ``('instanceWeights', w)``,
        ``('threshold', 0.5)``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Loss
    >>> block = Loss(loss='classerror')
    >>> x = np.array([2.0, 0.0, 0.0, 3.0], np.float32).reshape(1, 1, 2, 2, order='F')
    >>> float(block.forward([x, [1, 1]], [])[0]), block.average, block.num_averaged
    (1.0, 0.5, 2)
    >>> top5 = Loss(loss='topkerror', opts=['topK', 1])   # MatConvNet examples' 'top5err' output
    >>> float(top5.forward([x, [1, 1]], [])[0])
    1.0
    """

    type_name = "dagnn.Loss"
    label_inputs = (1,)
    saved_properties = ("loss", "ignore_average", "opts")

    def __init__(self, loss="softmaxlog", ignore_average=False, opts=()):
        self.loss = loss
        self.ignore_average = ignore_average
        self.opts = opts
        self.average = 0.0
        self.num_averaged = 0

    loss = Property(partial(choice, choices=LOSS_TYPES), "Loss type.")
    ignore_average = Property(flag, "Do not keep the running average.")

    @property
    def reports_average(self):
        """The trainer reports ``average`` unless ``ignore_average``."""
        return not self.ignore_average

    def forward(self, inputs, params):
        y = vl_nnloss(inputs[0], inputs[1], *self.block_opts(), loss=self.loss)
        self.accumulate_average(inputs[0], y)
        return [y]

    def accumulate_average(self, x, y):
        """Add the output ``y`` (summed, if an array) to the running average over the pixels and
        images of the prediction ``x``, unless ``ignore_average``."""
        if not self.ignore_average:
            shape = tuple(np.shape(x)) + (1,) * (4 - np.ndim(x))
            n = self.num_averaged
            m = n + shape[0] * shape[1] * shape[3]
            self.average = (n * self.average + float(np.sum(y))) / m
            self.num_averaged = m

    def backward(self, inputs, params, der_outputs):
        return [vl_nnloss(inputs[0], inputs[1], der_outputs[0], *self.block_opts(), loss=self.loss), None], []

    def reset(self):
        self.average = 0.0
        self.num_averaged = 0

    def get_output_sizes(self, input_sizes, param_sizes):
        # The loss is summed over the batch: one number (MatConvNet says 1 x 1 x 1 x N here).
        return [(1, 1, 1, 1)]


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _labels(layer):
    labels = layer.get("class")
    if labels is None:
        raise ValueError(f"{layer['type']} needs the labels in layer['class']")
    return labels


def _softmaxloss_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = vl_nnsoftmaxloss(res_i["x"], _labels(layer))


def _softmaxloss_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = vl_nnsoftmaxloss(res_i["x"], _labels(layer), res_ip1["dzdx"])


def _softmaxloss_to_dagnn(layer):
    return Conversion(Loss(loss="softmaxlog"), inputs=("label",))


register_layer_type("softmaxloss", _softmaxloss_forward, _softmaxloss_backward,
                    abbreviation="softmxl", loss=True, block=Loss, to_dagnn=_softmaxloss_to_dagnn)


# SimpleNN's 'loss' (MatConvNet's calls vl_nnloss(x, class) alone): cnnx also reads the fields
# 'loss' (the type) and 'opts' (more vl_nnloss options), as dagnn.Loss's properties.
def _loss_call(layer, res_i, *dzdy):
    return vl_nnloss(res_i["x"], _labels(layer), *dzdy, *without_gpu_options(cell(layer["opts"])),
                     loss=layer["loss"])


def _loss_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = _loss_call(layer, res_i)


def _loss_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = _loss_call(layer, res_i, res_ip1["dzdx"])


def _loss_to_dagnn(layer):
    return Conversion(Loss(loss=layer["loss"], opts=cell(layer["opts"])), inputs=("label",))


register_layer_type("loss", _loss_forward, _loss_backward, defaults={"loss": "softmaxlog", "opts": []},
                    options={"loss": Option("choice", choices=LOSS_TYPES)}, loss=True, block=Loss,
                    to_dagnn=_loss_to_dagnn)
