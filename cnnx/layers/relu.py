"""The ReLU layer kind (``vl_nnrelu``): SimpleNN's ``'relu'`` and DagNN's ``dagnn.ReLU``.

Examples
--------
>>> from cnnx.layers.relu import ReLU
>>> ReLU(leak=0.5).backward_from_output
True
"""
from .._options import Option
from ..activations import vl_nnrelu
from .base import ElementWise, Property, WithOpts, flag, real, reusable
from .registry import Conversion, register_layer_type


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


class ReLU(WithOpts, ElementWise):
    """ReLU / leaky ReLU block (``vl_nnrelu``).

    Parameters
    ----------
    leak : float, default 0
        Slope for negative inputs.
    use_short_circuit : bool, default True
        When the network conserves memory, back-propagate from the output (which has the input's
        sign pattern for ``leak >= 0``) so that the input can be freed after forward.
    opts : sequence, default ()
        More ``vl_nnrelu`` options.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import ReLU
    >>> ReLU(leak=0.1).forward([np.array([[-1.0, 2.0]])], [])[0]
    array([[-0.1,  2. ]])
    """

    type_name = "dagnn.ReLU"
    saved_properties = ("use_short_circuit", "leak", "opts")

    def __init__(self, leak=0.0, use_short_circuit=True, opts=()):
        self.leak = leak
        self.use_short_circuit = use_short_circuit
        self.opts = opts

    leak = Property(real, "Slope for negative inputs.")
    use_short_circuit = Property(flag, "Back-propagate from the output when conserving memory.")

    @property
    def backward_from_output(self):
        return self.use_short_circuit and self.leak >= 0

    def forward(self, inputs, params):
        return [vl_nnrelu(inputs[0], *self.block_opts(), leak=self.leak)]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnrelu(inputs[0], der_outputs[0], *self.block_opts(), leak=self.leak)], []


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _relu_forward(layer, res_i, res_ip1, ctx):
    x = res_i["x"]
    out = reusable(ctx, "overwrite_input", x, x)
    if ctx["output_freed"]:
        # The output is freed before backward: keep the input's signs, a 32nd of float32 memory.
        res_ip1["x"], res_ip1["aux"] = vl_nnrelu(x, leak=layer["leak"], out=out, signs=True)
    else:
        res_ip1["x"], res_ip1["aux"] = vl_nnrelu(x, leak=layer["leak"], out=out), None


def _relu_backward(layer, res_i, res_ip1, ctx):
    dzdy = res_ip1["dzdx"]
    signs = res_ip1["aux"]
    if signs is not None:
        res_i["dzdx"] = vl_nnrelu(None, dzdy, leak=layer["leak"], signs=signs,
                                  out=reusable(ctx, "overwrite_der_output", dzdy, dzdy))
        return
    # The output has the input's sign pattern (leak >= 0), so it stands in for a freed input.
    x = res_i["x"] if res_i["x"] is not None else res_ip1["x"]
    res_i["dzdx"] = vl_nnrelu(x, dzdy, leak=layer["leak"], out=reusable(ctx, "overwrite_der_output", dzdy, x))


def _relu_backward_from_output(layer):
    return layer["leak"] >= 0


def _relu_to_dagnn(layer):
    return Conversion(ReLU(leak=layer["leak"]))


register_layer_type(
    "relu", _relu_forward, _relu_backward, defaults={"leak": 0.0},
    options={"leak": Option("float")}, block=ReLU, to_dagnn=_relu_to_dagnn,
    backward_from_output=_relu_backward_from_output, frees_output=True, fresh_results=True,
)
