"""The p-distance layer kind (``vl_nnpdist``): SimpleNN's ``'pdist'`` and DagNN's ``dagnn.PDist``.

Both compare the input with a target of its shape (or 1 x 1 x D x N): SimpleNN's in
``layer['class']``, DagNN's as the second input (a third input, optional, holds the instance
weights). ``DagNN.from_simplenn`` makes a PDist of a 'pdist' layer, the target its ``label`` input.

Examples
--------
>>> from cnnx.layers.pdist import PDist
>>> PDist(p=1).aggregate
True
"""
from functools import partial

from ..pdist import _P, _SPEC, vl_nnpdist
from .base import Property, choice, flag, real
from .loss import Loss
from .registry import Conversion, register_layer_type

_POSITIVE = partial(real, expected="a finite number greater than 0", accept=lambda v: 0 < v < float("inf"))
_NON_NEGATIVE = partial(real, expected="a finite number of at least 0", accept=lambda v: 0 <= v < float("inf"))


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class PDist(Loss):
    """p-distance block (``vl_nnpdist``): inputs X, the target X0 and optionally the instance weights.

    A Loss (as MatConvNet's ``dagnn.PDist``): it keeps the running ``average`` of its output per
    pixel and image (the output summed when not aggregated), which the trainer reports. Backward
    gives the derivatives of X and X0 (none for the weights).

    Parameters
    ----------
    p : float, default 2
        The exponent of the distance.
    aggregate : bool, default True
        Sum the distances to one number.
    no_root : bool, default False
        The sum of the P-th powers, not its root (MatConvNet's HEAD property; beta25 has it only
        as an option).
    epsilon : float, default 1e-6
        Lower bound where the derivatives divide (MatConvNet's HEAD property).
    ignore_average : bool, default False
        Do not update ``average``.
    opts : sequence, default ()
        More ``vl_nnpdist`` name/value options.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import DagNN, PDist
    >>> net = DagNN()
    >>> net.add_layer('dist', PDist(p=2, no_root=True), ['x', 'target'], 'objective')
    >>> net.eval({'x': np.ones((1, 1, 2, 1)), 'target': np.zeros((1, 1, 2, 1))}, {'objective': 1.0})
    >>> float(net.get_var('objective').value), net.get_var('x').der.ravel().tolist()
    (2.0, [2.0, 2.0])
    """

    type_name = "dagnn.PDist"
    label_inputs = (2,)
    saved_properties = ("loss", "ignore_average", "opts", "p", "aggregate", "no_root", "epsilon")

    def __init__(self, p=2.0, aggregate=True, no_root=False, epsilon=1e-6, ignore_average=False, opts=(),
                 loss="pdist"):
        super().__init__(loss=loss, ignore_average=ignore_average, opts=opts)
        self.p = p
        self.aggregate = aggregate
        self.no_root = no_root
        self.epsilon = epsilon

    loss = Property(partial(choice, choices=("pdist",)), "Always 'pdist' (MatConvNet's Loss type of the block).")
    p = Property(_POSITIVE, "The exponent of the distance.")
    aggregate = Property(flag, "Sum the distances to one number.")
    no_root = Property(flag, "The sum of the P-th powers, not its P-th root.")
    epsilon = Property(_NON_NEGATIVE, "Lower bound where the derivatives divide.")

    def _call(self, inputs, *dzdy):
        weights = ("instanceWeights", inputs[2]) if len(inputs) > 2 else ()
        return vl_nnpdist(inputs[0], inputs[1], self.p, *dzdy, *weights, *self.block_opts(),
                          aggregate=self.aggregate, no_root=self.no_root, epsilon=self.epsilon)

    def forward(self, inputs, params):
        y = self._call(inputs)
        self.accumulate_average(inputs[0], y)
        return [y]

    def backward(self, inputs, params, der_outputs):
        dzdx, dzdx0 = self._call(inputs, der_outputs[0])
        return [dzdx, dzdx0] + [None] * (len(inputs) - 2), []

    def get_output_sizes(self, input_sizes, param_sizes):
        if self.aggregate:
            return [(1, 1, 1, 1)]
        size = input_sizes[0] if input_sizes else None
        return [None if size is None else (size[0], size[1], 1, size[3])]


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _target(layer):
    target = layer.get("class")
    if target is None:
        raise ValueError("pdist needs the target in layer['class']")
    return target


def _pdist_call(layer, res_i, *dzdy):
    return vl_nnpdist(res_i["x"], _target(layer), layer["p"], *dzdy, no_root=layer["noRoot"],
                      epsilon=layer["epsilon"], aggregate=layer["aggregate"],
                      instance_weights=layer["instanceWeights"])


def _pdist_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = _pdist_call(layer, res_i)


def _pdist_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = _pdist_call(layer, res_i, res_ip1["dzdx"])[0]


def _pdist_data_size(layer, in_size, out_size):
    return [1.0, 1.0, 1.0, 1.0] if layer["aggregate"] else out_size[:2] + [1.0, out_size[3]]


def _pdist_to_dagnn(layer):
    weights = layer["instanceWeights"]
    opts = () if weights is None else ("instanceWeights", weights)
    block = PDist(p=layer["p"], aggregate=layer["aggregate"], no_root=layer["noRoot"], epsilon=layer["epsilon"],
                  opts=opts)
    return Conversion(block, inputs=("label",))


register_layer_type(
    "pdist", _pdist_forward, _pdist_backward,
    # vl_simplenn_tidy's defaults (Epsilon 1e-3 there, 1e-6 in vl_nnpdist)
    defaults={"noRoot": False, "aggregate": False, "p": 2.0, "epsilon": 1e-3, "instanceWeights": None},
    options={"noRoot": _SPEC["no_root"], "aggregate": _SPEC["aggregate"], "p": _P, "epsilon": _SPEC["epsilon"]},
    data_size=_pdist_data_size, block=PDist, to_dagnn=_pdist_to_dagnn,
)
