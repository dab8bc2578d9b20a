"""The dropout layer kind (``vl_nndropout``): SimpleNN's ``'dropout'`` and DagNN's ``dagnn.DropOut``.

Both are the identity in test mode and keep the mask they drew in forward for backward.

Examples
--------
>>> from cnnx.layers.dropout import DropOut
>>> DropOut(rate=0.2).rate
0.2
"""
from functools import partial


from .._options import validate_value
from ..dropout import _OPTIONS as _BLOCK_OPTIONS, vl_nndropout
from .base import ElementWise, Property, flag, real, reusable
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class DropOut(ElementWise):
    """Dropout block (``vl_nndropout``); the identity in test mode.

    The mask drawn in forward is kept (``self.mask``) for backward. Masks are drawn from the
    network's ``rng`` (a ``numpy.random.Generator``) when it is set, in execution order, else from
    ``vl_nndropout``'s own generator.

    Parameters
    ----------
    rate : float, default 0.5
        Probability of dropping an element.
    frozen : bool, default False
        Reuse the last mask instead of drawing a new one.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import DagNN, DropOut
    >>> net = DagNN()
    >>> net.add_layer('drop', DropOut(rate=0.5), 'x', 'y')
    >>> net.mode = 'test'
    >>> net.eval({'x': np.ones((2, 2, 1, 1), np.float32)})
    >>> net.get_var('y').value.ravel().tolist()
    [1.0, 1.0, 1.0, 1.0]
    """

    type_name = "dagnn.DropOut"
    saved_properties = ("rate", "frozen")

    def __init__(self, rate=0.5, frozen=False):
        self.rate = rate
        self.frozen = frozen
        self.mask = None

    rate = Property(partial(real, expected="a number in [0, 1)", accept=lambda rate: 0 <= rate < 1),
                    "Dropout probability.")
    frozen = Property(flag, "Reuse the last mask.")

    def forward(self, inputs, params):
        if self._is_test_mode():
            return [inputs[0]]
        if self.frozen and self.mask is not None:
            y, _ = vl_nndropout(inputs[0], mask=self.mask)
            return [y]
        rng = None if self.net is None else self.net.rng
        y, self.mask = vl_nndropout(inputs[0], rate=self.rate, rng=rng)
        return [y]

    def backward(self, inputs, params, der_outputs):
        if self._is_test_mode():
            return [der_outputs[0]], []
        return [vl_nndropout(inputs[0], der_outputs[0], mask=self.mask)], []

    def reset(self):
        self.mask = None


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _dropout_forward(layer, res_i, res_ip1, ctx):
    x = res_i["x"]
    if ctx["mode"] == "test":
        res_ip1["x"] = x
        return
    rng = {} if ctx["rng"] is None else {"rng": ctx["rng"]}
    res_ip1["x"], res_ip1["aux"] = vl_nndropout(x, rate=layer["rate"], out=reusable(ctx, "overwrite_input", x, x),
                                                **rng)


def _dropout_backward(layer, res_i, res_ip1, ctx):
    dzdy = res_ip1["dzdx"]
    if ctx["mode"] == "test":
        res_i["dzdx"] = dzdy
    else:
        # Backward reads neither the input nor the output (freed, conserving memory): the mask
        # stands in for the input's shape and dtype.
        mask = res_ip1["aux"]
        res_i["dzdx"] = vl_nndropout(mask, dzdy, mask=mask, out=reusable(ctx, "overwrite_der_output", dzdy, mask))


# The block's rule for the rate; checked on every vl_simplenn call, since a test-mode call does not
# reach vl_nndropout.
_DROPOUT_OPTIONS = {"rate": _BLOCK_OPTIONS["rate"]}


def _dropout_check(layer, where):
    validate_value(where, "Rate", _DROPOUT_OPTIONS["rate"], layer["rate"])


def _dropout_to_dagnn(layer):
    return Conversion(DropOut(rate=layer["rate"]))


register_layer_type("dropout", _dropout_forward, _dropout_backward, defaults={"rate": 0.5},
                    options=_DROPOUT_OPTIONS, check=_dropout_check, block=DropOut, to_dagnn=_dropout_to_dagnn,
                    backward_from_output=lambda layer: True, backward_reads_output=False, fresh_results=True)
