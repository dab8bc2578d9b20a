"""The batch-normalisation layer kind (``vl_nnbnorm``): SimpleNN's ``'bnorm'`` and DagNN's ``dagnn.BatchNorm``.

Both take three weights, the gains G (C elements), the biases B (C elements) and the moments
(C x 2, ``[mu sigma]``). In normal (training) mode they normalise by the batch's moments; in test
mode by the stored ones. Backward always differentiates the batch-moments forward, in test mode
too, as MatConvNet's ``vl_simplenn`` does. Its third derivative is not a derivative: the batch's
moments times its number of images N, so that sums over sub-batches (and MPI ranks) divided by the
batch size are the batch's average moments; ``cnn_train`` learns the moments as a running average
of them (``weight_train_methods``: ``'average'``), with the rate ``learningRate(3)``.

Examples
--------
>>> from cnnx.layers.bnorm import BatchNorm
>>> BatchNorm(num_channels=3).init_params(None)[2].shape
(3, 2)
"""
import math

import numpy as np

from .._checks import shape4
from ..bnorm import _OPTIONS as _BLOCK_OPTIONS, vl_nnbnorm
from .base import Layer, Property, WithOpts, check_array, check_weight_count, int_tuple, real, same_size
from .registry import Conversion, register_layer_type

_METHODS = ("gradient", "gradient", "average")


def _normalized(x, gains, biases, moments, test_mode, epsilon, opts):
    """The layer's output: normalised by the batch's moments, or in test mode by ``moments``."""
    given = {"moments": moments} if test_mode else {}
    y, _ = vl_nnbnorm(x, gains, biases, *opts, epsilon=epsilon, **given)
    return y


def _derivatives(x, gains, biases, moments, dzdy, epsilon, opts):
    """(dzdx, [dzdg, dzdb, batch moments x N]), each weight's "derivative" shaped like the weight."""
    dzdx, dzdg, dzdb, batch_moments = vl_nnbnorm(x, gains, biases, dzdy, *opts, epsilon=epsilon)
    images = shape4(x, "X", "vl_nnbnorm")[3]
    ders = [dzdg, dzdb, batch_moments * images]
    return dzdx, [der.reshape(np.shape(w), order="F") for der, w in zip(ders, (gains, biases, moments))]


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


def _num_channels(owner, name, value):
    # MatConvNet's default is [] (unset), as its fromSimpleNN leaves it.
    if value is None or np.size(value) == 0:
        return 0
    return int_tuple(owner, name, value, {1: (0,)}, 0)[0]


class BatchNorm(WithOpts, Layer):
    """Batch-normalisation block (``vl_nnbnorm``): input x, parameters gains, biases and moments.

    In test mode (``net.mode = 'test'``) x is normalised by the moments parameter, else by the
    batch's moments. The moments parameter is learned as a running average (``train_method =
    'average'``, ``learning_rate = 0.1``, as MatConvNet's ``attach`` sets): its "derivative" is the
    batch's moments times the number of images (MatConvNet beta25). Backward differentiates the
    batch-moments forward in either mode (MatConvNet's ``dagnn.BatchNorm`` fails in test mode; this
    is ``vl_simplenn``'s rule). The derivatives have the shapes of the parameters.

    Parameters
    ----------
    num_channels : int, default 0
        Number of channels C, used by ``init_params`` (gains ones(C, 1), biases zeros(C, 1),
        moments zeros(C, 2), single precision); 0 is MatConvNet's unset ``[]``.
    epsilon : float, default 1e-5
        ``vl_nnbnorm``'s Epsilon, a finite number >= 0.
    opts : sequence, default ()
        More ``vl_nnbnorm`` name/value options (MatConvNet's ``'NoCuDNN'`` is ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import BatchNorm, DagNN
    >>> net = DagNN()
    >>> net.add_layer('bn', BatchNorm(num_channels=2), 'x', 'y', ['bnm', 'bnb', 'bnx'])
    >>> net.init_params()
    >>> [(p.train_method, p.learning_rate) for p in net.params]
    [('gradient', 1.0), ('gradient', 1.0), ('average', 0.1)]
    >>> net.get_param('bnx').value = np.array([[1, 2], [3, 4]], np.float32)   # [mu sigma] per channel
    >>> net.mode = 'test'
    >>> net.eval({'x': np.full((1, 1, 2, 1), 5, np.float32)})
    >>> net.get_var('y').value.ravel().tolist()
    [2.0, 0.5]
    """

    type_name = "dagnn.BatchNorm"
    saved_properties = ("num_channels", "epsilon", "opts")
    param_train_methods = _METHODS
    param_learning_rates = (None, None, 0.1)

    def __init__(self, num_channels=0, epsilon=1e-5, opts=()):
        self.num_channels = num_channels
        self.epsilon = epsilon
        self.opts = opts

    num_channels = Property(_num_channels, "Number of channels (0: unset).")
    epsilon = Property(lambda owner, name, value: real(owner, name, value, "a finite number >= 0",
                                                       lambda number: math.isfinite(number) and number >= 0),
                       "Added to the variance.")

    def forward(self, inputs, params):
        gains, biases, moments = params
        return [_normalized(inputs[0], gains, biases, moments, self._is_test_mode(), self.epsilon,
                            self.block_opts())]

    def backward(self, inputs, params, der_outputs):
        dzdx, ders = _derivatives(inputs[0], *params, der_outputs[0], self.epsilon, self.block_opts())
        return [dzdx], ders

    def init_params(self, rng):
        if self.num_channels < 1:
            raise ValueError("BatchNorm: num_channels is not set; give BatchNorm(num_channels=C)")
        channels = self.num_channels
        return [np.ones((channels, 1), np.float32), np.zeros((channels, 1), np.float32),
                np.zeros((channels, 2), np.float32)]

    def get_output_sizes(self, input_sizes, param_sizes):
        return same_size(input_sizes)


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _bnorm_forward(layer, res_i, res_ip1, ctx):
    gains, biases, moments = layer["weights"]
    res_ip1["x"] = _normalized(res_i["x"], gains, biases, moments, ctx["mode"] == "test", layer["epsilon"], ())


def _bnorm_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"], ders = _derivatives(res_i["x"], *layer["weights"], res_ip1["dzdx"], layer["epsilon"], ())
    return ders


def _bnorm_tidy(layer):
    # MatConvNet's tidy adds zero moments to a layer given only [G, B] (single; here G's precision).
    weights = layer["weights"]
    if len(weights) == 2 and isinstance(weights[0], np.ndarray):
        dtype = weights[0].dtype if weights[0].dtype in (np.float32, np.float64) else np.float32
        layer["weights"] = [*weights, np.zeros((weights[0].size, 2), dtype=dtype)]


def _bnorm_check(layer, where):
    check_weight_count(where, layer, 3, "[G, B, MOMENTS]")
    labels = ("the gains weights[0]", "the biases weights[1]", "the moments weights[2]")
    for label, w in zip(labels, layer["weights"]):
        check_array(where, label, w)
    gains, biases, moments = layer["weights"]
    channels = gains.size
    if biases.size != channels:
        raise ValueError(f"{where}: the biases weights[1] must have one element per gain ({channels}), "
                         f"got shape {biases.shape}")
    if moments.size != 2 * channels:
        raise ValueError(f"{where}: the moments weights[2] must be C x 2 [MU SIGMA] for the {channels} gains, "
                         f"got shape {moments.shape}")
    for kind, w in (("biases", biases), ("moments", moments)):
        if w.dtype != gains.dtype:
            raise TypeError(f"{where}: the {kind} are {w.dtype} but the gains are {gains.dtype}")


def _bnorm_to_dagnn(layer):
    block = BatchNorm(num_channels=np.size(layer["weights"][0]), epsilon=layer["epsilon"])
    return Conversion(block, ("m", "b", "x"))


# vl_nnbnorm's rule for Epsilon; vl_simplenn_tidy and model files check it, as the block does.
_BNORM_OPTIONS = {"epsilon": _BLOCK_OPTIONS["epsilon"]}

register_layer_type("bnorm", _bnorm_forward, _bnorm_backward, defaults={"epsilon": 1e-5}, options=_BNORM_OPTIONS,
                    tidy=_bnorm_tidy, check=_bnorm_check, weight_train_methods=_METHODS, block=BatchNorm,
                    to_dagnn=_bnorm_to_dagnn, backward_reads_output=False)
