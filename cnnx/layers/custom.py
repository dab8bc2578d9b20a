"""SimpleNN's ``'custom'`` layer kind: the user's forward and backward functions with MatConvNet's
signature ``res_ip1 = forward(layer, res_i, res_ip1)``, ``res_i = backward(layer, res_i, res_ip1)``.

It has no DagNN block (write a :class:`cnnx.layers.Layer` subclass instead) and cannot be stored
in a model file.

Examples
--------
>>> from cnnx.layers.registry import LAYER_TYPES
>>> LAYER_TYPES['custom'].to_dagnn is None
True
"""
import math

import numpy as np

from .base import require
from .registry import register_layer_type


# ------------------------------------------------------------------------------------------------
# SimpleNN layer
# ------------------------------------------------------------------------------------------------


def _replace_record(record, returned):
    # MatConvNet's custom functions return the updated res struct; in-place updates also work.
    if returned is not None and returned is not record:
        if not isinstance(returned, dict):
            raise TypeError(f"a custom layer function must return a res dict (or None), "
                            f"got {type(returned).__name__}")
        record.clear()
        record.update(returned)


def _custom_forward(layer, res_i, res_ip1, ctx):
    _replace_record(res_ip1, layer["forward"](layer, res_i, res_ip1))


def _custom_backward(layer, res_i, res_ip1, ctx):
    _replace_record(res_i, layer["backward"](layer, res_i, res_ip1))


def _custom_check(layer, where):
    for field in ("forward", "backward"):
        require(where, layer, field, f"a callable {field}(layer, res_i, res_ip1)")
        if not callable(layer[field]):
            raise TypeError(f"{where}: '{field}' must be callable, got {type(layer[field]).__name__}")
    if "getForwardSize" in layer and not callable(layer["getForwardSize"]):
        raise TypeError(f"{where}: 'getForwardSize' must be callable")


def _custom_data_size(layer, in_size, out_size):
    if "getForwardSize" in layer:
        return [float(v) for v in np.ravel(layer["getForwardSize"](layer, list(in_size)))]
    out_size[2] = math.nan
    return out_size


register_layer_type("custom", _custom_forward, _custom_backward, check=_custom_check,
                    data_size=_custom_data_size, holds_functions=True)
