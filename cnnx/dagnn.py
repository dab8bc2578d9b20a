"""DagNN: networks whose layers form a directed acyclic graph, as MatConvNet's ``dagnn.DagNN``.

A :class:`DagNN` holds named variables (``vars``), named parameters (``params``) and layers, each a
block (a :class:`Layer` subclass such as :class:`Conv`) that reads some variables and parameters and
writes other variables. ``eval`` runs the blocks in a topological order and, given derivatives of
some outputs, back-propagates, summing the derivatives of variables and parameters that several
layers use. The graph code only orders calls, keeps values and sums derivatives; the arithmetic is
in the block functions (``vl_nnconv``, ``vl_nnpool``, ...).

Examples
--------
>>> import numpy as np
>>> from cnnx.dagnn import DagNN, Conv, ReLU, Loss
>>> net = DagNN()
>>> net.add_layer('conv', Conv(size=(3, 3, 1, 4), pad=1), 'input', 'x1', ['conv_f', 'conv_b'])
>>> net.add_layer('relu', ReLU(), 'x1', 'x2')
>>> net.add_layer('loss', Loss(), ['x2', 'label'], 'objective')
>>> net.init_params(rng=0)
>>> x = np.random.default_rng(0).standard_normal((5, 5, 1, 2)).astype(np.float32)
>>> net.eval({'input': x, 'label': [1, 3]}, {'objective': 1})
>>> net.get_param('conv_f').der.shape
(3, 3, 1, 4)
>>> net.get_var('input').der.shape
(5, 5, 1, 2)
"""
import contextlib
import copy as _copy
import math
import sys
import time
import warnings

import numpy as np

from ._options import without_gpu_options
from .activations import vl_nnprelu, vl_nnrelu
from .concat import vl_nnconcat
from .conv import vl_nnconv
from .dropout import vl_nndropout
from .nnloss import vl_nnloss
from .pool import vl_nnpool

__all__ = [
    "Concat", "Conv", "DagLayer", "DagNN", "DropOut", "Layer", "Loss", "PReLU", "Param", "Pooling",
    "ReLU", "Sum", "Var",
]


# ------------------------------------------------------------------------------------------------
# Records of the graph
# ------------------------------------------------------------------------------------------------


class Var:
    """A network variable: its value, its derivative and how many layers write and read it.

    Attributes: ``name``, ``value`` (array or None), ``der`` (derivative or None), ``fanin``
    (number of layers writing it: 0 for a network input, else 1), ``fanout`` (number of layer
    inputs reading it), ``precious`` (keep the value and derivative when conserving memory).

    Examples
    --------
    >>> from cnnx.dagnn import Var
    >>> Var('x1')
    Var('x1', fanin=0, fanout=0)
    """

    __slots__ = ("name", "value", "der", "fanin", "fanout", "precious")

    def __init__(self, name):
        self.name = name
        self.value = None
        self.der = None
        self.fanin = 0
        self.fanout = 0
        self.precious = False

    def __repr__(self):
        extra = ", precious=True" if self.precious else ""
        return f"Var({self.name!r}, fanin={self.fanin}, fanout={self.fanout}{extra})"


class Param:
    """A network parameter: its value, derivative and training settings.

    Attributes: ``name``, ``value``, ``der``, ``fanout`` (number of layers using it),
    ``learning_rate`` (1; multiplies the trainer's rate), ``weight_decay`` (1; multiplies the
    trainer's decay) and ``train_method`` ('gradient', or 'average' for moving averages).

    Examples
    --------
    >>> from cnnx.dagnn import Param
    >>> Param('conv1f').learning_rate
    1.0
    """

    __slots__ = ("name", "value", "der", "fanout", "learning_rate", "weight_decay", "train_method")

    def __init__(self, name):
        self.name = name
        self.value = None
        self.der = None
        self.fanout = 0
        self.learning_rate = 1.0
        self.weight_decay = 1.0
        self.train_method = "gradient"

    def __repr__(self):
        shape = None if self.value is None else tuple(np.shape(self.value))
        return f"Param({self.name!r}, shape={shape}, learning_rate={self.learning_rate}, " \
               f"weight_decay={self.weight_decay})"


class DagLayer:
    """One layer of a DagNN: its name, block and the names (and indexes) of what it reads and writes.

    Attributes: ``name``, ``block``, ``inputs``, ``outputs``, ``params`` (lists of names),
    ``input_indexes``, ``output_indexes``, ``param_indexes`` (positions in ``net.vars`` and
    ``net.params``), ``forward_time``, ``backward_time`` (seconds spent in the last ``eval``).

    Examples
    --------
    >>> from cnnx.dagnn import DagNN, ReLU
    >>> net = DagNN()
    >>> net.add_layer('relu', ReLU(), 'x0', 'x1')
    >>> net.layers[0]
    DagLayer('relu', ReLU, inputs=['x0'], outputs=['x1'], params=[])
    """

    __slots__ = ("name", "block", "inputs", "outputs", "params", "input_indexes", "output_indexes",
                 "param_indexes", "forward_time", "backward_time")

    def __init__(self, name, block, inputs, outputs, params):
        self.name = name
        self.block = block
        self.inputs = inputs
        self.outputs = outputs
        self.params = params
        self.input_indexes = []
        self.output_indexes = []
        self.param_indexes = []
        self.forward_time = 0.0
        self.backward_time = 0.0

    def __repr__(self):
        return (f"DagLayer({self.name!r}, {type(self.block).__name__}, inputs={self.inputs}, "
                f"outputs={self.outputs}, params={self.params})")


# ------------------------------------------------------------------------------------------------
# Conversions of block properties (they may come from MATLAB structs: arrays, doubles, cells)
# ------------------------------------------------------------------------------------------------


def _show(value):
    """A value as an error message shows it: numbers plainly (``1.5``, ``nan``, ``[1, 1, 1]``)."""
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (str, np.str_)):
        return f"the string {str(value)!r}"
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = value.item() if isinstance(value, np.generic) else value
        return str(int(number)) if isinstance(number, float) and number.is_integer() else repr(number)
    if isinstance(value, (list, tuple)) and 0 < len(value) <= 8 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            for v in value):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iuf" and value.size <= 8 and (value.ndim <= 1 or value.ndim == 2 and 1 in value.shape):
            shown = [_show(v) for v in value.reshape(-1, order="F")]
            return shown[0] if value.ndim == 0 else "[" + ", ".join(shown) + "]"
        if value.dtype.kind == "U" and value.size == 1:
            return _show(str(value.reshape(-1)[0]))
        return f"a {'x'.join(str(d) for d in value.shape)} {value.dtype} array"
    return repr(value)


def _property_error(owner, name, expected, value, kind=ValueError):
    """``kind("Owner: name must be <expected>, got <value>")``, with its parts kept for re-wording.

    :meth:`Layer.load` and :meth:`DagNN.loadobj` name the property as the caller or the file did
    (``poolSize``, ``block.pad``) from the attribute ``cnnx_property = (owner, name, expected, value)``.
    """
    error = kind(f"{owner}: {name} must be {expected}, got {_show(value)}")
    error.cnnx_property = (owner, name, expected, value)
    return error


def _whole_numbers(lengths, minimum):
    counts = sorted(lengths)
    sign = {0: "non-negative ", 1: "positive "}.get(minimum, "")
    if counts == [1]:
        return f"a {sign}whole number"
    text = str(counts[0]) if len(counts) == 1 else ", ".join(str(c) for c in counts[:-1]) + f" or {counts[-1]}"
    return f"{text} {sign}whole numbers"


def _int_tuple(owner, name, value, lengths, minimum, expected=None, shown=None):
    """Whole numbers >= minimum as a tuple; ``lengths`` maps a given length to an expansion."""
    expected = expected or _whole_numbers(lengths, minimum)
    shown = value if shown is None else shown
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested sequences
        arr = np.asarray(None)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise _property_error(owner, name, expected, shown, TypeError)
    flat = arr.reshape(-1)
    if (flat.size not in lengths or not np.all(np.isfinite(flat)) or np.any(flat != np.trunc(flat))
            or np.any(flat < minimum)):
        raise _property_error(owner, name, expected, shown)
    ints = [int(v) for v in flat]
    return tuple(ints[i] for i in lengths[flat.size])


_PAD4 = {1: (0, 0, 0, 0), 2: (0, 0, 1, 1), 4: (0, 1, 2, 3)}  # [p1 p2] means [p1 p1 p2 p2]
_PAIR = {1: (0, 0), 2: (0, 1)}


def _scalar(owner, name, value, expected):
    """The one number in ``value`` (a Python or NumPy number, or a 1-element array)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.size != 1 or arr.dtype == object or arr.dtype.kind not in "biuf":
        raise _property_error(owner, name, expected, value, TypeError)
    return arr.reshape(-1)[0].item()


def _real(owner, name, value, expected="a finite number", accept=math.isfinite):
    number = float(_scalar(owner, name, value, expected))
    if not accept(number):
        raise _property_error(owner, name, expected, value)
    return number


def _bool(owner, name, value):
    number = _scalar(owner, name, value, "true or false")
    if number not in (0, 1):  # NaN is not either
        raise _property_error(owner, name, "true or false", value)
    return bool(number)


def _text(owner, name, value):
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        value = value.reshape(-1)[0]
    if not isinstance(value, str):
        raise _property_error(owner, name, "a string", value, TypeError)
    return str(value)


def _choice(owner, name, value, choices):
    expected = "one of " + ", ".join(f"'{c}'" for c in choices)
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        value = str(value.reshape(-1)[0])
    if not isinstance(value, str):
        raise _property_error(owner, name, expected, value, TypeError)
    if value.lower() not in choices:
        raise _property_error(owner, name, expected, value)
    return value.lower()


def _cell(value):
    """A MATLAB cell array (list, tuple, object array or a lone string) as a list of plain values."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return []
        if value.dtype == object:
            value = value.reshape(-1, order="F").tolist()
        elif value.dtype.kind == "U":
            value = [str(v) for v in value.reshape(-1)]
        else:
            value = [value]
    items = []
    for item in value:
        if isinstance(item, np.ndarray) and item.dtype.kind == "U" and item.size == 1:
            item = str(item.reshape(-1)[0])
        elif isinstance(item, np.str_):
            item = str(item)
        items.append(item)
    return items


def _names(value, what):
    """A list of names from a string or a sequence of strings (MATLAB: a char or a cell of chars)."""
    names = _cell(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise _property_error("DagNN", what, "non-empty strings", name, TypeError)
    return names


def _saved(value):
    """A property as MATLAB would store it: numbers as doubles, tuples as row vectors, cells as lists."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, tuple) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in value):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, (list, tuple)):
        return list(value)
    return _copy.deepcopy(value)


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------


class Layer:
    """Base class of DagNN blocks; subclass it to write your own.

    A block computes ``outputs = forward(inputs, params)`` and
    ``der_inputs, der_params = backward(inputs, params, der_outputs)``, where each argument is a
    list of arrays in the order of the layer's ``inputs``, ``params`` and ``outputs`` names. Backward
    returns one derivative per input and per parameter (None for an input that needs none, such as
    labels). The network is ``self.net`` (None outside a network), so a block can read
    ``self.net.mode``.

    Other methods a block may override: ``init_params(rng)`` (initial parameter values, a list),
    ``get_output_sizes(input_sizes, param_sizes)`` (output (H, W, C, N) tuples, None where unknown),
    ``reset()`` (forget state between runs). ``saved_properties`` lists the attributes that
    :meth:`DagNN.saveobj` stores (under camelCase names, as MatConvNet's), and ``type_name`` the
    type written there; :meth:`DagNN.loadobj` needs ``blocks={type_name: cls}`` to rebuild a block
    that is not cnnx's. ``backward_from_output = True`` declares that ``backward`` can take the
    outputs in place of the inputs (an elementwise block like ReLU); then, when the network
    conserves memory, it is given the outputs and the inputs can be freed early.

    Examples
    --------
    A block that scales its input by a parameter ``s`` (a 1-element array):

    >>> import numpy as np
    >>> from cnnx.dagnn import DagNN, Layer
    >>> class Scale(Layer):
    ...     def forward(self, inputs, params):
    ...         return [inputs[0] * params[0]]
    ...     def backward(self, inputs, params, der_outputs):
    ...         dy = der_outputs[0]
    ...         return [dy * params[0]], [np.sum(dy * inputs[0]).reshape(params[0].shape)]
    >>> net = DagNN()
    >>> net.add_layer('scale', Scale(), 'x', 'y', 's')
    >>> net.get_param('s').value = np.array([2.0])
    >>> net.eval({'x': np.ones((2, 2))}, {'y': np.ones((2, 2))})
    >>> net.get_var('y').value.tolist(), net.get_param('s').der.tolist()
    ([[2.0, 2.0], [2.0, 2.0]], [4.0])
    """

    saved_properties = ()
    backward_from_output = False
    net = None

    @classmethod
    def block_type(cls):
        """The type name :meth:`DagNN.saveobj` stores: ``type_name``, else ``module.ClassName``."""
        return cls.__dict__.get("type_name") or f"{cls.__module__}.{cls.__qualname__}"

    def forward(self, inputs, params):
        """Outputs (a list of arrays) from the inputs and parameters (lists of arrays)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, inputs, params, der_outputs):
        """``(der_inputs, der_params)``: derivatives projected onto ``der_outputs``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def init_params(self, rng):
        """Initial values of the layer's parameters (a list; empty if the block has none)."""
        return []

    def get_output_sizes(self, input_sizes, param_sizes):
        """(H, W, C, N) size of each output, or None where it cannot be told (the default)."""
        return None

    def reset(self):
        """Forget any state kept between calls (running averages, masks)."""

    def save(self):
        """The block's properties as a dict with MatConvNet's (camelCase) names."""
        return {_camel(attr): _saved(getattr(self, attr)) for attr in self.saved_properties}

    def load(self, properties):
        """Set properties from a dict (camelCase or snake_case names), as from :meth:`save`.

        A bad value raises the property's TypeError or ValueError, naming it as ``properties`` does.
        """
        by_name = {}
        for attr in self.saved_properties:
            by_name[attr] = attr
            by_name[_camel(attr)] = attr
        for key, value in dict(properties or {}).items():
            attr = by_name.get(key)
            if attr is None:
                known = ", ".join(_camel(a) for a in self.saved_properties) or "none"
                raise ValueError(f"{type(self).__name__} has no property '{key}' (its properties: {known})")
            try:
                setattr(self, attr, value)
            except (TypeError, ValueError) as error:
                found = getattr(error, "cnnx_property", None)
                if found is None or found[1] != attr or key == attr:
                    raise
                raise _property_error(found[0], key, found[2], found[3], type(error)) from None

    def _is_test_mode(self):
        return self.net is not None and self.net.mode == "test"

    def __repr__(self):
        props = ", ".join(f"{attr}={getattr(self, attr)!r}" for attr in self.saved_properties)
        return f"{type(self).__name__}({props})"


def _same_size(input_sizes):
    return [None if not input_sizes or input_sizes[0] is None else tuple(input_sizes[0])]


def _window_output(size, pad, stride, extent):
    """Sliding-window output height and width (MatConvNet's floor formula)."""
    h, w = size[0], size[1]
    yh = math.floor((h + pad[0] + pad[1] - extent[0]) / stride[0]) + 1
    yw = math.floor((w + pad[2] + pad[3] - extent[1]) / stride[1]) + 1
    return yh, yw


class _Filter(Layer):
    """Padding, stride and dilation shared by Conv and Pooling (MatConvNet's dagnn.Filter)."""

    @property
    def pad(self):
        """[top, bottom, left, right] zero padding; 1 value for all, or [p1 p2] = [p1 p1 p2 p2]."""
        return self._pad

    @pad.setter
    def pad(self, value):
        self._pad = _int_tuple(type(self).__name__, "pad", value, _PAD4, 0)

    @property
    def stride(self):
        """[sy, sx] step of the window (1 value for both)."""
        return self._stride

    @stride.setter
    def stride(self, value):
        self._stride = _int_tuple(type(self).__name__, "stride", value, _PAIR, 1)

    @property
    def dilate(self):
        """[dy, dx] dilation of the window (1 value for both)."""
        return self._dilate

    @dilate.setter
    def dilate(self, value):
        self._dilate = _int_tuple(type(self).__name__, "dilate", value, _PAIR, 1)


class Conv(_Filter):
    """Convolution block (``vl_nnconv``): input x, parameters filters (and biases), output y.

    Parameters
    ----------
    size : sequence of 4 ints, default (0, 0, 0, 0)
        Filter bank shape (FH, FW, FC, K), used by ``init_params`` (and for sizes before the
        filters have values). Shorter MATLAB sizes are padded with 1s.
    pad, stride, dilate : int or sequence
        As ``vl_nnconv``'s options (pad 1, 2 or 4 values; stride and dilate 1 or 2).
    has_bias : bool, default True
        Whether the layer has a second parameter, the biases (K elements).
    opts : sequence, default ()
        More ``vl_nnconv`` name/value options (MatConvNet's cuDNN switches are ignored).

    Examples
    --------
    >>> from cnnx.dagnn import Conv
    >>> Conv(size=(5, 5, 3, 32), pad=2).get_output_sizes([(32, 32, 3, 10)], [None])
    [(32, 32, 32, 10)]
    """

    type_name = "dagnn.Conv"
    saved_properties = ("size", "has_bias", "opts", "pad", "stride", "dilate")

    def __init__(self, size=(0, 0, 0, 0), pad=0, stride=1, dilate=1, has_bias=True, opts=()):
        self.size = size
        self.pad = pad
        self.stride = stride
        self.dilate = dilate
        self.has_bias = has_bias
        self.opts = opts

    @property
    def size(self):
        """(FH, FW, FC, K) shape of the filter bank."""
        return self._size

    @size.setter
    def size(self, value):
        # MATLAB's size() drops trailing singleton dimensions: [5 5 3] is [5 5 3 1].
        try:
            flat = np.asarray(value).reshape(-1)
        except (TypeError, ValueError):  # ragged nested sequences
            flat = np.asarray([None], dtype=object)
        if 2 <= flat.size < 4 and flat.dtype.kind in "biuf":
            flat = np.concatenate([flat, np.ones(4 - flat.size, dtype=flat.dtype)])
        self._size = _int_tuple("Conv", "size", flat, {4: (0, 1, 2, 3)}, 0,
                                expected="2 to 4 non-negative whole numbers [FH FW FC K]", shown=value)

    @property
    def has_bias(self):
        """Whether the second parameter (biases) is used."""
        return self._has_bias

    @has_bias.setter
    def has_bias(self, value):
        self._has_bias = _bool("Conv", "has_bias", value)

    @property
    def opts(self):
        """Extra ``vl_nnconv`` options, as a tuple."""
        return self._opts

    @opts.setter
    def opts(self, value):
        self._opts = tuple(_cell(value))

    def _options(self):
        return dict(pad=self.pad, stride=self.stride, dilate=self.dilate)

    def _biases(self, params):
        if not self.has_bias:
            return None
        if len(params) < 2:
            raise ValueError("Conv: has_bias is true but the layer has no second parameter (the biases)")
        return params[1]

    def forward(self, inputs, params):
        return [vl_nnconv(inputs[0], params[0], self._biases(params), *without_gpu_options(self.opts),
                          **self._options())]

    def backward(self, inputs, params, der_outputs):
        dx, df, db = vl_nnconv(inputs[0], params[0], self._biases(params), der_outputs[0],
                               *without_gpu_options(self.opts), **self._options())
        return [dx], ([df, db] if self.has_bias else [df])

    def init_params(self, rng):
        # He et al.: randn * sqrt(2 / (FH FW FC)); zero biases; single precision, as MatConvNet.
        if min(self.size) < 1:
            raise ValueError(f"Conv: size {self.size} is not set; give Conv(size=(FH, FW, FC, K))")
        scale = np.float32(math.sqrt(2.0 / (self.size[0] * self.size[1] * self.size[2])))
        count = int(np.prod(self.size))
        filters = (rng.standard_normal(count, dtype=np.float32) * scale).reshape(self.size, order="F")
        if not self.has_bias:
            return [filters]
        return [filters, np.zeros((self.size[3], 1), dtype=np.float32)]

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or input_sizes[0] is None:
            return [None]
        size = param_sizes[0] if param_sizes and param_sizes[0] is not None else self.size
        extent = [(size[0] - 1) * self.dilate[0] + 1, (size[1] - 1) * self.dilate[1] + 1]
        yh, yw = _window_output(input_sizes[0], self.pad, self.stride, extent)
        return [(yh, yw, size[3], input_sizes[0][3])]


class Pooling(_Filter):
    """Pooling block (``vl_nnpool``): max or average over windows of each channel.

    Parameters
    ----------
    method : {'max', 'avg'}
        Pooling method.
    pool_size : int or sequence of 2 ints, default (1, 1)
        Window [PH, PW].
    pad, stride : int or sequence
        As ``vl_nnpool``'s options.
    opts : sequence, default ()
        More ``vl_nnpool`` name/value options (cuDNN switches are ignored).
    dilate : 1
        Kept for MatConvNet's files (dagnn.Filter has it); must be 1.

    Examples
    --------
    >>> from cnnx.dagnn import Pooling
    >>> Pooling(method='max', pool_size=3, pad=(0, 1, 0, 1), stride=2).get_output_sizes(
    ...     [(32, 32, 32, 100)], [])
    [(16, 16, 32, 100)]
    """

    type_name = "dagnn.Pooling"
    saved_properties = ("method", "pool_size", "opts", "pad", "stride", "dilate")

    def __init__(self, method="max", pool_size=1, pad=0, stride=1, opts=(), dilate=1):
        self.method = method
        self.pool_size = pool_size
        self.pad = pad
        self.stride = stride
        self.opts = opts
        self.dilate = dilate

    @_Filter.dilate.setter
    def dilate(self, value):
        # Inherited from dagnn.Filter and saved by MatConvNet, but vl_nnpool has no dilation.
        dilate = _int_tuple("Pooling", "dilate", value, _PAIR, 1, expected="1 (vl_nnpool has no dilation)")
        if dilate != (1, 1):
            raise _property_error("Pooling", "dilate", "1 (vl_nnpool has no dilation)", value)
        self._dilate = dilate

    @property
    def method(self):
        """'max' or 'avg'."""
        return self._method

    @method.setter
    def method(self, value):
        self._method = _choice("Pooling", "method", value, ("max", "avg"))

    @property
    def pool_size(self):
        """[PH, PW] pooling window."""
        return self._pool_size

    @pool_size.setter
    def pool_size(self, value):
        self._pool_size = _int_tuple("Pooling", "pool_size", value, _PAIR, 1)

    @property
    def opts(self):
        """Extra ``vl_nnpool`` options, as a tuple."""
        return self._opts

    @opts.setter
    def opts(self, value):
        self._opts = tuple(_cell(value))

    def _options(self):
        return dict(pad=self.pad, stride=self.stride, method=self.method)

    def forward(self, inputs, params):
        return [vl_nnpool(inputs[0], self.pool_size, *without_gpu_options(self.opts), **self._options())]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnpool(inputs[0], self.pool_size, der_outputs[0], *without_gpu_options(self.opts),
                          **self._options())], []

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or input_sizes[0] is None:
            return [None]
        yh, yw = _window_output(input_sizes[0], self.pad, self.stride, self.pool_size)
        return [(yh, yw, input_sizes[0][2], input_sizes[0][3])]


class ReLU(Layer):
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

    @property
    def leak(self):
        """Slope for negative inputs."""
        return self._leak

    @leak.setter
    def leak(self, value):
        self._leak = _real("ReLU", "leak", value)

    @property
    def use_short_circuit(self):
        """Back-propagate from the output when conserving memory."""
        return self._use_short_circuit

    @use_short_circuit.setter
    def use_short_circuit(self, value):
        self._use_short_circuit = _bool("ReLU", "use_short_circuit", value)

    @property
    def opts(self):
        """Extra ``vl_nnrelu`` options, as a tuple."""
        return self._opts

    @opts.setter
    def opts(self, value):
        self._opts = tuple(_cell(value))

    @property
    def backward_from_output(self):
        return self.use_short_circuit and self.leak >= 0

    def forward(self, inputs, params):
        return [vl_nnrelu(inputs[0], *self.opts, leak=self.leak)]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnrelu(inputs[0], der_outputs[0], *self.opts, leak=self.leak)], []

    def get_output_sizes(self, input_sizes, param_sizes):
        return _same_size(input_sizes)


class PReLU(Layer):
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

    @property
    def num_channels(self):
        """Number of slopes."""
        return self._num_channels

    @num_channels.setter
    def num_channels(self, value):
        self._num_channels = _int_tuple("PReLU", "num_channels", value, {1: (0,)}, 1)[0]

    def forward(self, inputs, params):
        return [vl_nnprelu(inputs[0], params[0])]

    def backward(self, inputs, params, der_outputs):
        dx, da = vl_nnprelu(inputs[0], params[0], der_outputs[0])
        return [dx], [da]

    def init_params(self, rng):
        return [np.full((self.num_channels, 1), 0.25, dtype=np.float32)]

    def get_output_sizes(self, input_sizes, param_sizes):
        return _same_size(input_sizes)


class DropOut(Layer):
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

    @property
    def rate(self):
        """Dropout probability."""
        return self._rate

    @rate.setter
    def rate(self, value):
        self._rate = _real("DropOut", "rate", value, "a number in [0, 1)", lambda rate: 0 <= rate < 1)

    @property
    def frozen(self):
        """Reuse the last mask."""
        return self._frozen

    @frozen.setter
    def frozen(self, value):
        self._frozen = _bool("DropOut", "frozen", value)

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

    def get_output_sizes(self, input_sizes, param_sizes):
        return _same_size(input_sizes)


class Loss(Layer):
    """Loss block (``vl_nnloss``): inputs prediction and labels, output the summed loss.

    Keeps MatConvNet's running ``average`` of the loss per instance (per pixel and image) over the
    calls since the last ``reset()``, and their number ``num_averaged``.

    Parameters
    ----------
    loss : {'softmaxlog', 'classerror'}
        Loss type.
    ignore_average : bool, default False
        Do not update ``average``.
    opts : sequence, default ()
        More ``vl_nnloss`` name/value options (e.g. ``('instanceWeights', w)``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Loss
    >>> block = Loss(loss='classerror')
    >>> x = np.array([2.0, 0.0, 0.0, 3.0], np.float32).reshape(1, 1, 2, 2, order='F')
    >>> float(block.forward([x, [1, 1]], [])[0]), block.average, block.num_averaged
    (1.0, 0.5, 2)
    """

    type_name = "dagnn.Loss"
    saved_properties = ("loss", "ignore_average", "opts")

    def __init__(self, loss="softmaxlog", ignore_average=False, opts=()):
        self.loss = loss
        self.ignore_average = ignore_average
        self.opts = opts
        self.average = 0.0
        self.num_averaged = 0

    @property
    def loss(self):
        """Loss type."""
        return self._loss

    @loss.setter
    def loss(self, value):
        self._loss = _choice("Loss", "loss", value, ("softmaxlog", "classerror"))

    @property
    def ignore_average(self):
        """Do not keep the running average."""
        return self._ignore_average

    @ignore_average.setter
    def ignore_average(self, value):
        self._ignore_average = _bool("Loss", "ignore_average", value)

    @property
    def opts(self):
        """Extra ``vl_nnloss`` options, as a tuple."""
        return self._opts

    @opts.setter
    def opts(self, value):
        self._opts = tuple(_cell(value))

    def forward(self, inputs, params):
        y = vl_nnloss(inputs[0], inputs[1], *self.opts, loss=self.loss)
        if not self.ignore_average:
            shape = tuple(np.shape(inputs[0])) + (1,) * (4 - np.ndim(inputs[0]))
            n = self.num_averaged
            m = n + shape[0] * shape[1] * shape[3]
            self.average = (n * self.average + float(y)) / m
            self.num_averaged = m
        return [y]

    def backward(self, inputs, params, der_outputs):
        return [vl_nnloss(inputs[0], inputs[1], der_outputs[0], *self.opts, loss=self.loss), None], []

    def reset(self):
        self.average = 0.0
        self.num_averaged = 0

    def get_output_sizes(self, input_sizes, param_sizes):
        # The loss is summed over the batch: one number (MatConvNet says 1 x 1 x 1 x N here).
        return [(1, 1, 1, 1)]


class Concat(Layer):
    """Concatenation block (``vl_nnconcat``) of any number of inputs along ``dim``.

    Parameters
    ----------
    dim : int, default 3
        1-based dimension: 1 height, 2 width, 3 channels, 4 batch.

    Examples
    --------
    >>> from cnnx.dagnn import Concat
    >>> Concat().get_output_sizes([(8, 8, 16, 2), (8, 8, 32, 2)], [])
    [(8, 8, 48, 2)]
    """

    type_name = "dagnn.Concat"
    saved_properties = ("dim",)

    def __init__(self, dim=3):
        self.dim = dim

    @property
    def dim(self):
        """1-based dimension to join along."""
        return self._dim

    @dim.setter
    def dim(self, value):
        dim = _int_tuple("Concat", "dim", value, {1: (0,)}, 1, expected="1, 2, 3 or 4")[0]
        if dim > 4:
            raise _property_error("Concat", "dim", "1, 2, 3 or 4", value)
        self._dim = dim

    def forward(self, inputs, params):
        return [vl_nnconcat(inputs, self.dim)]

    def backward(self, inputs, params, der_outputs):
        return vl_nnconcat(inputs, self.dim, der_outputs[0]), []

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or any(s is None for s in input_sizes):
            return [None]
        out = list(input_sizes[0])
        out[self.dim - 1] = sum(s[self.dim - 1] for s in input_sizes)
        return [tuple(out)]


class Sum(Layer):
    """Elementwise sum of any number of inputs of one shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Sum
    >>> Sum().forward([np.ones(3), np.full(3, 2.0)], [])[0]
    array([3., 3., 3.])
    """

    type_name = "dagnn.Sum"

    def forward(self, inputs, params):
        first = np.asarray(inputs[0])
        for i, x in enumerate(inputs[1:], start=1):
            if np.shape(x) != first.shape:
                raise ValueError(f"Sum: input {i} has shape {np.shape(x)} but input 0 has {first.shape}")
            if np.asarray(x).dtype != first.dtype:
                raise TypeError(f"Sum: input {i} is {np.asarray(x).dtype} but input 0 is {first.dtype}")
        total = np.array(first, order="F", copy=True)
        for x in inputs[1:]:
            total += x
        return [total]

    def backward(self, inputs, params, der_outputs):
        return [der_outputs[0]] * len(inputs), []

    def get_output_sizes(self, input_sizes, param_sizes):
        return _same_size(input_sizes)


_BLOCK_TYPES = {cls.type_name: cls for cls in (Conv, Pooling, ReLU, PReLU, DropOut, Loss, Concat, Sum)}


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------


def _pairs(arg, what):
    """``{name: value}`` or MatConvNet's flat ``[name, value, ...]`` as a list of pairs."""
    if arg is None:
        return []
    if isinstance(arg, dict):
        pairs = list(arg.items())
    elif isinstance(arg, (list, tuple)):
        if len(arg) % 2:
            raise ValueError(f"DagNN.eval: {what} must be a dict or a list [name, value, ...] of even length")
        pairs = [(arg[i], arg[i + 1]) for i in range(0, len(arg), 2)]
    else:
        raise TypeError(f"DagNN.eval: {what} must be a dict or a list [name, value, ...], got {type(arg).__name__}")
    seen = set()
    for name, _ in pairs:
        if not isinstance(name, str):
            raise TypeError(f"DagNN.eval: {what} must be named by strings, got {name!r}")
        if name in seen:
            raise ValueError(f"DagNN.eval: variable '{name}' is given twice in {what}")
        seen.add(name)
    return pairs


def _size4(value, name):
    arr = np.asarray(value).reshape(-1)
    if not 1 <= arr.size <= 4 or arr.dtype.kind not in "iuf" or np.any(arr < 0) or np.any(arr != np.trunc(arr)):
        raise ValueError(f"DagNN.get_var_sizes: the size of '{name}' must be 1 to 4 non-negative integers, "
                         f"got {value!r}")
    return tuple(int(v) for v in arr) + (1,) * (4 - arr.size)


def _record(value, what):
    """One MATLAB struct (a dict) or a struct array (a list of dicts, or an object array of them)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1, order="F").tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"DagNN.loadobj: {what} must be a struct array (a list of dicts)")
    return list(value)


class DagNN:
    """A network of named variables, parameters and layers forming a directed acyclic graph.

    Build it with :meth:`add_layer` (or :meth:`from_simplenn`, :meth:`loadobj`), initialise it
    with :meth:`init_params`, run it with :meth:`eval`, and read the results from ``vars`` and
    ``params`` (:meth:`get_var`, :meth:`get_param`).

    Attributes
    ----------
    layers : list of DagLayer
        The layers, in the order they were added.
    vars : list of Var
        The variables, in order of first use. A variable written by no layer is a network input.
    params : list of Param
        The parameters, in order of first use. Layers can share a parameter (its derivatives add).
    meta : dict
        Free-form information (``inputSize``, ``classes``, ``trainOpts``, ...).
    mode : {'normal', 'test'}
        'test' makes dropout the identity. 'train' is accepted as 'normal'.
    conserve_memory : bool, default True
        Free intermediate values and derivatives once no layer needs them (see :meth:`eval`);
        ``var.precious = True`` keeps a variable.
    accumulate_param_ders : bool, default False
        Add parameter derivatives to those of the previous ``eval`` instead of overwriting them
        (for sub-batches).
    rng : numpy.random.Generator or None
        Source of dropout masks (None: ``vl_nndropout``'s own).
    execution_order : list of int
        Layer indexes in the order ``eval`` runs them (a depth-first topological order).

    Examples
    --------
    A branch and a join:

    >>> import numpy as np
    >>> from cnnx.dagnn import DagNN, Conv, ReLU, Concat
    >>> net = DagNN()
    >>> net.add_layer('a', Conv(size=(1, 1, 2, 3)), 'x', 'ya', ['af', 'ab'])
    >>> net.add_layer('b', ReLU(), 'x', 'yb')
    >>> net.add_layer('cat', Concat(), ['ya', 'yb'], 'y')
    >>> net.init_params(rng=0)
    >>> net.get_var_sizes({'x': (4, 4, 2, 1)})['y']
    (4, 4, 5, 1)
    >>> net.get_inputs(), net.get_outputs()
    (['x'], ['y'])
    """

    def __init__(self):
        self.layers = []
        self.vars = []
        self.params = []
        self.meta = {}
        self._mode = "normal"
        self.conserve_memory = True
        self.accumulate_param_ders = False
        self.rng = None
        self.execution_order = []
        self._var_index = {}
        self._param_index = {}
        self._layer_index = {}

    # -------------------------------------------------------------------------------------------
    # Settings
    # -------------------------------------------------------------------------------------------

    @property
    def mode(self):
        """'normal' (training) or 'test'."""
        return self._mode

    @mode.setter
    def mode(self, value):
        mode = value.lower() if isinstance(value, str) else None
        if mode not in ("normal", "train", "test"):
            raise ValueError(f"DagNN: mode must be 'normal', 'train' or 'test', got {value!r}")
        self._mode = "test" if mode == "test" else "normal"

    # -------------------------------------------------------------------------------------------
    # Building
    # -------------------------------------------------------------------------------------------

    def add_layer(self, name, block, inputs=(), outputs=(), params=()):
        """Add a layer named ``name`` running ``block`` on variables and parameters given by name.

        Variables and parameters are created when first named. The graph must stay acyclic, a
        variable can be written by one layer only, and layer names are unique.

        Parameters
        ----------
        name : str
            Layer name.
        block : Layer
            A block instance, used by this layer only.
        inputs, outputs, params : str or sequence of str
            Names of the input variables, output variables and parameters.

        Raises
        ------
        TypeError
            If ``block`` is not a :class:`Layer` or a name is not a non-empty string.
        ValueError
            If the name is taken, the block belongs to another layer, an output variable is
            already written by another layer (or twice by this one), or the layer closes a cycle.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"DagNN.add_layer: the layer name must be a non-empty string, got {name!r}")
        if name in self._layer_index:
            raise ValueError(f"DagNN.add_layer: there is already a layer named '{name}'")
        if not isinstance(block, Layer):
            raise TypeError(f"DagNN.add_layer: layer '{name}': block must be a cnnx.dagnn.Layer, "
                            f"got {type(block).__name__}")
        if block.net is not None and any(layer.block is block for layer in block.net.layers):
            raise ValueError(f"DagNN.add_layer: layer '{name}': this block object already belongs to "
                             f"another layer; create a new block")
        layer = DagLayer(name, block, _names(inputs, "inputs"), _names(outputs, "outputs"),
                         _names(params, "params"))
        self._check_outputs(layer, self.layers)
        self.layers.append(layer)
        try:
            self._rebuild()
        except ValueError as error:
            self.layers.pop()
            self._rebuild()
            raise ValueError(f"DagNN.add_layer: layer '{name}': {error}") from None
        block.net = self

    def remove_layer(self, name):
        """Remove the layer(s) ``name`` (a name or a list); variables and parameters no other layer
        uses are removed too.

        Raises
        ------
        ValueError
            If there is no such layer.
        """
        names = _names(name, "layer names")
        for layer_name in names:
            if layer_name not in self._layer_index:
                raise ValueError(f"DagNN.remove_layer: no layer named '{layer_name}'")
        removed = [layer for layer in self.layers if layer.name in names]
        self.layers = [layer for layer in self.layers if layer.name not in names]
        for layer in removed:
            layer.block.net = None
        self._rebuild()

    def rename_var(self, old, new):
        """Rename variable ``old`` to ``new`` everywhere.

        Raises
        ------
        ValueError
            If ``old`` does not exist or ``new`` is taken.
        """
        self._rename(self._var_index, self.vars, "variable", old, new)
        for layer in self.layers:
            layer.inputs = [new if v == old else v for v in layer.inputs]
            layer.outputs = [new if v == old else v for v in layer.outputs]
        self._rebuild()

    def rename_param(self, old, new):
        """Rename parameter ``old`` to ``new`` everywhere.

        Raises
        ------
        ValueError
            If ``old`` does not exist or ``new`` is taken.
        """
        self._rename(self._param_index, self.params, "parameter", old, new)
        for layer in self.layers:
            layer.params = [new if p == old else p for p in layer.params]
        self._rebuild()

    def rename_layer(self, old, new):
        """Rename layer ``old`` to ``new``.

        Raises
        ------
        ValueError
            If ``old`` does not exist or ``new`` is taken.
        """
        self._rename(self._layer_index, self.layers, "layer", old, new)
        self._rebuild()

    def set_layer_inputs(self, layer, inputs):
        """Replace the input variables of layer ``layer`` (a name)."""
        self._set_layer_names(layer, "inputs", _names(inputs, "inputs"))

    def set_layer_outputs(self, layer, outputs):
        """Replace the output variables of layer ``layer`` (a name)."""
        self._set_layer_names(layer, "outputs", _names(outputs, "outputs"))

    def set_layer_params(self, layer, params):
        """Replace the parameters of layer ``layer`` (a name)."""
        self._set_layer_names(layer, "params", _names(params, "params"))

    def _set_layer_names(self, layer_name, field, names):
        layer = self.get_layer(layer_name)
        before = getattr(layer, field)
        setattr(layer, field, names)
        try:
            if field == "outputs":
                self._check_outputs(layer, [other for other in self.layers if other is not layer])
            self._rebuild()
        except ValueError as error:
            setattr(layer, field, before)
            self._rebuild()
            raise ValueError(f"DagNN.set_layer_{field}: layer '{layer_name}': {error}") from None

    @staticmethod
    def _check_outputs(layer, others):
        if len(set(layer.outputs)) != len(layer.outputs):
            raise ValueError(f"DagNN: layer '{layer.name}' names an output variable twice: {layer.outputs}")
        for other in others:
            for v in layer.outputs:
                if v in other.outputs:
                    raise ValueError(f"DagNN: layer '{layer.name}': variable '{v}' is already the output of "
                                     f"layer '{other.name}'; a variable has one producer")

    def _rename(self, index, items, what, old, new):
        if old not in index:
            raise ValueError(f"DagNN: no {what} named '{old}'")
        if not isinstance(new, str) or not new:
            raise TypeError(f"DagNN: the new {what} name must be a non-empty string, got {new!r}")
        if new != old and new in index:
            raise ValueError(f"DagNN: cannot rename {what} '{old}' to '{new}': that name is taken")
        items[index[old]].name = new

    def _rebuild(self):
        """Recompute indexes, fan-in/fan-out and the execution order; drop unused vars and params."""
        used_vars, used_params = [], []
        for layer in self.layers:
            used_vars.extend(layer.inputs + layer.outputs)
            used_params.extend(layer.params)
        old_vars = {v.name: v for v in self.vars}
        old_params = {p.name: p for p in self.params}
        self.vars = [old_vars.get(name) or Var(name) for name in dict.fromkeys(used_vars)]
        self.params = [old_params.get(name) or Param(name) for name in dict.fromkeys(used_params)]
        self._var_index = {v.name: i for i, v in enumerate(self.vars)}
        self._param_index = {p.name: i for i, p in enumerate(self.params)}
        self._layer_index = {layer.name: i for i, layer in enumerate(self.layers)}

        for v in self.vars:
            v.fanin = v.fanout = 0
        for p in self.params:
            p.fanout = 0
        producer = {}
        for l, layer in enumerate(self.layers):
            layer.input_indexes = [self._var_index[v] for v in layer.inputs]
            layer.output_indexes = [self._var_index[v] for v in layer.outputs]
            layer.param_indexes = [self._param_index[p] for p in layer.params]
            for v in layer.input_indexes:
                self.vars[v].fanout += 1
            for v in layer.output_indexes:
                self.vars[v].fanin += 1
                producer[v] = l
            for p in layer.param_indexes:
                self.params[p].fanout += 1
        self.execution_order = self._topological_order(producer)

    def _topological_order(self, producer):
        """Depth-first order (each layer after the producers of its inputs), as MatConvNet's."""
        state = [0] * len(self.layers)  # 0 unseen, 1 on the stack, 2 done
        order = []
        for root in range(len(self.layers)):
            if state[root]:
                continue
            state[root] = 1
            stack = [(root, iter(self.layers[root].input_indexes))]
            while stack:
                l, pending = stack[-1]
                for v in pending:
                    p = producer.get(v)
                    if p is None or state[p] == 2:
                        continue
                    if state[p] == 1:
                        path = [self.layers[k].name for k, _ in stack]
                        path = path[path.index(self.layers[p].name):] + [self.layers[p].name]
                        raise ValueError(f"the layers form a cycle through variable '{self.vars[v].name}': "
                                         + " -> ".join(path))
                    state[p] = 1
                    stack.append((p, iter(self.layers[p].input_indexes)))
                    break
                else:
                    stack.pop()
                    state[l] = 2
                    order.append(l)
        return order

    # -------------------------------------------------------------------------------------------
    # Lookups
    # -------------------------------------------------------------------------------------------

    @staticmethod
    def _lookup(index, name):
        if isinstance(name, (list, tuple)):
            return [index.get(n) for n in name]
        return index.get(name)

    def get_layer_index(self, name):
        """Index of layer ``name`` in ``layers`` (None if missing); a list for a list of names."""
        return self._lookup(self._layer_index, name)

    def get_var_index(self, name):
        """Index of variable ``name`` in ``vars`` (None if missing); a list for a list of names."""
        return self._lookup(self._var_index, name)

    def get_param_index(self, name):
        """Index of parameter ``name`` in ``params`` (None if missing); a list for a list of names."""
        return self._lookup(self._param_index, name)

    def get_layer(self, name):
        """The :class:`DagLayer` named ``name`` (ValueError if missing)."""
        return self._get(self._layer_index, self.layers, "layer", name)

    def get_var(self, name):
        """The :class:`Var` named ``name`` (ValueError if missing)."""
        return self._get(self._var_index, self.vars, "variable", name)

    def get_param(self, name):
        """The :class:`Param` named ``name`` (ValueError if missing)."""
        return self._get(self._param_index, self.params, "parameter", name)

    @staticmethod
    def _get(index, items, what, name):
        i = index.get(name)
        if i is None:
            raise ValueError(f"DagNN: no {what} named {name!r}")
        return items[i]

    def get_inputs(self):
        """Names of the network inputs (variables no layer writes)."""
        return [v.name for v in self.vars if v.fanin == 0]

    def get_outputs(self):
        """Names of the network outputs (variables no layer reads)."""
        return [v.name for v in self.vars if v.fanout == 0]

    # -------------------------------------------------------------------------------------------
    # Running
    # -------------------------------------------------------------------------------------------

    def init_params(self, rng=None):
        """Give every parameter the initial value its block chooses (He init for Conv filters,
        zero biases, 0.25 PReLU slopes), in single precision as MatConvNet.

        Parameters
        ----------
        rng : numpy.random.Generator or int, optional
            Random source (an int seeds a new generator; None draws a fresh seed).
        """
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        for layer in self.layers:
            values = layer.block.init_params(rng)
            if not values:
                continue
            if len(values) != len(layer.param_indexes):
                raise ValueError(f"DagNN.init_params: layer '{layer.name}' has {len(layer.params)} parameters "
                                 f"but its block initialises {len(values)}")
            for p, value in zip(layer.param_indexes, values):
                self.params[p].value = value

    def reset(self):
        """Clear the values and derivatives of variables, parameter derivatives and block state."""
        for v in self.vars:
            v.value = v.der = None
        for p in self.params:
            p.der = None
        for layer in self.layers:
            layer.block.reset()

    def eval(self, inputs, der_outputs=None):
        """Run the network forward, then backward if output derivatives are given.

        ``net.eval({'input': x, 'label': c})`` or MatConvNet's ``net.eval(['input', x, 'label', c])``
        computes every variable it can; ``net.eval(inputs, {'objective': 1})`` also back-propagates
        and leaves derivatives in ``var.der`` and ``param.der``.

        Every network input must be given, except those only Loss layers read (labels): without
        them the Loss layers are skipped, so a network can run for prediction alone. Forward runs
        the layers in ``execution_order``. Every call starts from scratch: values and derivatives
        of all variables are cleared first.

        Backward runs the layers in reverse order. A variable read by several layers gets the sum of
        their derivatives, plus its entry in ``der_outputs`` if any. A parameter's derivative is
        overwritten by the first layer that reaches it and then accumulated, or always accumulated
        with ``accumulate_param_ders``.

        With ``conserve_memory`` (the default) a value is freed once no layer needs it: in a
        forward-only run after its last reader; when back-propagating, after the backward step of
        its producer (with its derivative). A ReLU (``use_short_circuit``) back-propagates from its
        output, so its input is freed after forward. Network outputs (variables no layer reads),
        network inputs' derivatives and precious variables are kept. (MatConvNet also frees the
        outputs, and with them the objective's value, when back-propagating.)

        Parameters
        ----------
        inputs : dict or list
            ``{name: value}`` or ``[name, value, ...]`` for network inputs.
        der_outputs : dict or list, optional
            ``{name: derivative}`` of variables to back-propagate from, usually ``{'objective': 1}``.
            Scalars are cast to the variable's dtype; arrays must have its shape.

        Raises
        ------
        ValueError
            If a name is not a variable, names a variable computed by a layer (not an input), an
            input other than labels is missing, a derivative is given for a variable that got no
            value (the message names the missing input), a parameter has no value, or a block
            returns the wrong number of values.
        """
        input_pairs = _pairs(inputs, "inputs")
        der_pairs = _pairs(der_outputs, "der_outputs")
        computing_derivative = bool(der_pairs)
        for v in self.vars:
            v.value = v.der = None
        for name, value in input_pairs:
            var = self._eval_var(name, "inputs")
            if var.fanin:
                producer = next(layer.name for layer in self.layers if name in layer.outputs)
                raise ValueError(f"DagNN.eval: variable '{name}' is computed by layer '{producer}'; only the "
                                 f"network inputs {self.get_inputs()} can be given")
            if value is None:
                raise ValueError(f"DagNN.eval: the value of input '{name}' is None")
            var.value = np.asarray(value)
        self._check_inputs_given()

        short_circuit = [self.conserve_memory and layer.block.backward_from_output for layer in self.layers]
        self._forward(computing_derivative, short_circuit)
        if computing_derivative:
            self._backward(der_pairs, short_circuit)

    def _check_inputs_given(self):
        """Every network input must be given, except labels (inputs read by Loss layers only)."""
        for v, var in enumerate(self.vars):
            if var.fanin or var.value is not None:
                continue
            readers = [layer for layer in self.layers if v in layer.input_indexes]
            other = next((layer for layer in readers if not isinstance(layer.block, Loss)), None)
            if other is not None:
                raise ValueError(f"DagNN.eval: the network input '{var.name}' (read by layer '{other.name}') "
                                 f"is not given")

    def _eval_var(self, name, what):
        i = self._var_index.get(name)
        if i is None:
            raise ValueError(f"DagNN.eval: {what} names '{name}', which is not a variable of the network "
                             f"(inputs: {self.get_inputs()})")
        return self.vars[i]

    def _freeable_in_forward(self, computing_derivative, short_circuit):
        """Which variables forward may free after their last reader has run."""
        if not self.conserve_memory:
            return [False] * len(self.vars)
        freeable = [not v.precious and v.fanout > 0 for v in self.vars]
        if computing_derivative:
            # Backward needs the inputs of every layer, or the outputs of a short-circuit one.
            for l, layer in enumerate(self.layers):
                for v in layer.output_indexes if short_circuit[l] else layer.input_indexes:
                    freeable[v] = False
        return freeable

    def _forward(self, computing_derivative, short_circuit):
        freeable = self._freeable_in_forward(computing_derivative, short_circuit)
        pending = [v.fanout for v in self.vars]
        for l in self.execution_order:
            layer = self.layers[l]
            values = [self.vars[v].value for v in layer.input_indexes]
            if any(value is None for value in values):
                continue
            params = self._param_values(layer)
            for v in layer.input_indexes:
                pending[v] -= 1
                if pending[v] == 0 and freeable[v]:
                    self.vars[v].value = None
            start = time.perf_counter()
            outputs = layer.block.forward(values, params)
            layer.forward_time = time.perf_counter() - start
            self._check_count(layer, "forward", "outputs", outputs, len(layer.outputs))
            for v, value in zip(layer.output_indexes, outputs):
                self.vars[v].value = value

    def _param_values(self, layer):
        values = []
        for p in layer.param_indexes:
            if self.params[p].value is None:
                raise ValueError(f"DagNN.eval: layer '{layer.name}': parameter '{self.params[p].name}' has no "
                                 f"value (call init_params() or set it)")
            values.append(self.params[p].value)
        return values

    @staticmethod
    def _check_count(layer, method, what, values, expected):
        if values is None or len(values) != expected:
            got = "None" if values is None else len(values)
            raise ValueError(f"DagNN.eval: layer '{layer.name}': {type(layer.block).__name__}.{method} "
                             f"returned {got} {what}, expected {expected}")

    def _set_output_derivative(self, name, der):
        var = self._eval_var(name, "der_outputs")
        if var.value is None:
            raise ValueError(f"DagNN.eval: der_outputs names '{name}', which has no value: "
                             f"{self._why_missing(self._var_index[name])}")
        value = np.asarray(var.value)
        dtype = value.dtype if value.dtype.kind == "f" else None
        der = np.asarray(der, dtype=dtype)
        if der.size == 1 and value.size == 1:
            der = der.reshape(value.shape)
        if der.shape != value.shape:
            raise ValueError(f"DagNN.eval: the derivative of '{name}' has shape {der.shape} but its value "
                             f"has shape {value.shape}")
        var.der = der

    def _why_missing(self, v):
        """Explain why variable ``v`` got no value: trace back to a network input nobody gave."""
        while True:
            layer = next((layer for layer in self.layers if v in layer.output_indexes), None)
            if layer is None:
                return f"the network input '{self.vars[v].name}' was not given"
            missing = [i for i in layer.input_indexes if self.vars[i].value is None]
            if not missing:
                return f"layer '{layer.name}' did not run"
            v = missing[0]

    def _backward(self, der_pairs, short_circuit):
        for name, der in der_pairs:
            self._set_output_derivative(name, der)
        param_refs = [0] * len(self.params)
        for l in reversed(self.execution_order):
            layer = self.layers[l]
            der_outputs = [self.vars[v].der for v in layer.output_indexes]
            if any(der is None for der in der_outputs):
                continue
            sources = layer.output_indexes if short_circuit[l] else layer.input_indexes
            values = [self.vars[v].value for v in sources]
            if any(value is None for value in values):  # cannot happen: forward keeps these
                raise RuntimeError(f"DagNN.eval: layer '{layer.name}': a value needed by backward was freed")
            params = self._param_values(layer)
            if self.conserve_memory:
                for v in layer.output_indexes:
                    var = self.vars[v]
                    if not var.precious and var.fanout > 0:
                        var.value = var.der = None
            start = time.perf_counter()
            result = layer.block.backward(values, params, der_outputs)
            layer.backward_time = time.perf_counter() - start
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise ValueError(f"DagNN.eval: layer '{layer.name}': {type(layer.block).__name__}.backward must "
                                 f"return (der_inputs, der_params)")
            der_inputs, der_params = result
            self._check_count(layer, "backward", "input derivatives", der_inputs, len(layer.inputs))
            self._check_count(layer, "backward", "parameter derivatives", der_params, len(layer.params))
            for v, der in zip(layer.input_indexes, der_inputs):
                if der is not None:
                    var = self.vars[v]
                    var.der = der if var.der is None else var.der + der
            for p, der in zip(layer.param_indexes, der_params):
                if der is None:
                    continue
                param = self.params[p]
                if param.der is None or (param_refs[p] == 0 and not self.accumulate_param_ders):
                    param.der = der
                else:
                    param.der = param.der + der
                param_refs[p] += 1

    # -------------------------------------------------------------------------------------------
    # Information
    # -------------------------------------------------------------------------------------------

    def get_var_sizes(self, input_sizes):
        """The (H, W, C, N) size of every variable, given the sizes of the inputs.

        Parameters
        ----------
        input_sizes : dict or list
            ``{name: size}`` or ``[name, size, ...]``; a size has 1 to 4 elements (missing trailing
            dimensions are 1).

        Returns
        -------
        dict
            ``{var_name: (H, W, C, N) or None}`` in the order of ``vars``; None where a size cannot
            be told (an input not given, or a block that does not say).

        Raises
        ------
        ValueError
            If a name is not a network input.
        """
        sizes = [None] * len(self.vars)
        for name, size in _pairs(input_sizes, "input_sizes"):
            i = self._var_index.get(name)
            if i is None or self.vars[i].fanin:
                raise ValueError(f"DagNN.get_var_sizes: '{name}' is not a network input "
                                 f"(inputs: {self.get_inputs()})")
            sizes[i] = _size4(size, name)
        for l in self.execution_order:
            layer = self.layers[l]
            in_sizes = [sizes[v] for v in layer.input_indexes]
            param_sizes = [None if self.params[p].value is None else
                           tuple(np.shape(self.params[p].value)) + (1,) * (4 - np.ndim(self.params[p].value))
                           for p in layer.param_indexes]
            out_sizes = layer.block.get_output_sizes(in_sizes, param_sizes) or [None] * len(layer.outputs)
            for v, size in zip(layer.output_indexes, out_sizes):
                sizes[v] = None if size is None else tuple(int(s) for s in size)
        return {v.name: size for v, size in zip(self.vars, sizes)}

    def print(self, input_sizes=None, file=None):
        """Print tables of the layers, variables and parameters (see :meth:`summary`)."""
        print(self.summary(input_sizes), file=file if file is not None else sys.stdout)

    def summary(self, input_sizes=None):
        """Tables of the layers, variables (with sizes if ``input_sizes`` is given) and parameters.

        Examples
        --------
        >>> from cnnx.dagnn import DagNN, ReLU
        >>> net = DagNN()
        >>> net.add_layer('relu', ReLU(), 'x0', 'x1')
        >>> print(net.summary({'x0': (2, 2, 3, 1)}))  # doctest: +NORMALIZE_WHITESPACE
        Layers
        layer  type  inputs  outputs  params
        relu   ReLU  x0      x1
        <BLANKLINE>
        Variables
        variable  size     fanin  fanout  precious
        x0        2x2x3x1  0      1       no
        x1        2x2x3x1  1      0       no
        <BLANKLINE>
        Parameters
        parameter  size  dtype  elements  learning rate  weight decay  method
        total: 0 parameters (0 B)
        """
        sizes = self.get_var_sizes(input_sizes) if input_sizes is not None else {}
        layer_rows = [[layer.name, type(layer.block).__name__, ", ".join(layer.inputs),
                       ", ".join(layer.outputs), ", ".join(layer.params)]
                      for layer in (self.layers[l] for l in self.execution_order)]
        var_rows = []
        for v in self.vars:
            size = sizes.get(v.name)
            if size is None and v.value is not None:
                size = np.shape(v.value) + (1,) * (4 - np.ndim(v.value))
            var_rows.append([v.name, "?" if size is None else "x".join(str(s) for s in size),
                             str(v.fanin), str(v.fanout), "yes" if v.precious else "no"])
        param_rows = []
        total = total_bytes = 0
        for p in self.params:
            value = None if p.value is None else np.asarray(p.value)
            if value is not None:
                total += value.size
                total_bytes += value.nbytes
            param_rows.append([p.name, "?" if value is None else "x".join(str(s) for s in value.shape),
                               "?" if value is None else str(value.dtype),
                               "?" if value is None else str(value.size),
                               f"{p.learning_rate:g}", f"{p.weight_decay:g}", p.train_method])
        parts = [
            "Layers", _table(["layer", "type", "inputs", "outputs", "params"], layer_rows), "",
            "Variables", _table(["variable", "size", "fanin", "fanout", "precious"], var_rows), "",
            "Parameters",
            _table(["parameter", "size", "dtype", "elements", "learning rate", "weight decay", "method"],
                   param_rows),
            f"total: {total} parameters ({_bytes(total_bytes)})",
        ]
        return "\n".join(parts)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return f"<DagNN: {len(self.layers)} layers, {len(self.vars)} variables, {len(self.params)} parameters>"

    # -------------------------------------------------------------------------------------------
    # Conversion and serialisation
    # -------------------------------------------------------------------------------------------

    def saveobj(self):
        """The network as a plain dict in MatConvNet's ``saveobj`` layout (for ``.mat`` files).

        Returns
        -------
        dict
            ``vars``: list of ``{'name', 'precious'}``; ``params``: list of ``{'name', 'value',
            'learningRate', 'weightDecay', 'trainMethod'}``; ``layers``: list of ``{'name', 'type'
            (e.g. 'dagnn.Conv'), 'inputs', 'outputs', 'params', 'block'}`` where ``block`` holds the
            block's properties (numbers as float64, vectors as 1-D float64 arrays, cells as lists);
            ``meta``. Values are copies. MatConvNet's loadobj reads this layout (it sets the extra
            ``trainMethod`` field as it comes).

        Examples
        --------
        >>> from cnnx.dagnn import DagNN, Pooling
        >>> net = DagNN()
        >>> net.add_layer('pool', Pooling(method='avg', pool_size=2, stride=2), 'x0', 'x1')
        >>> s = net.saveobj()
        >>> s['layers'][0]['type'], s['layers'][0]['block']['poolSize']
        ('dagnn.Pooling', array([2., 2.]))
        >>> DagNN.loadobj(s).layers[0].block
        Pooling(method='avg', pool_size=(2, 2), opts=(), pad=(0, 0, 0, 0), stride=(2, 2), dilate=(1, 1))
        """
        return {
            "vars": [{"name": v.name, "precious": bool(v.precious)} for v in self.vars],
            "params": [{"name": p.name, "value": None if p.value is None else np.array(p.value, order="K"),
                        "learningRate": float(p.learning_rate), "weightDecay": float(p.weight_decay),
                        "trainMethod": p.train_method} for p in self.params],
            "layers": [{"name": layer.name, "type": layer.block.block_type(), "inputs": list(layer.inputs),
                        "outputs": list(layer.outputs), "params": list(layer.params),
                        "block": layer.block.save()} for layer in self.layers],
            "meta": _copy.deepcopy(self.meta),
        }

    @classmethod
    def loadobj(cls, s, blocks=None):
        """Rebuild a network from :meth:`saveobj`'s dict (as MatConvNet's ``dagnn.DagNN.loadobj``).

        Parameters
        ----------
        s : dict or DagNN
            The saved structure (a DagNN is returned as is; a SimpleNN dict is converted with
            :meth:`from_simplenn`, with a warning, as MatConvNet does).
        blocks : dict, optional
            ``{type_name: Layer subclass}`` for block types that are not cnnx's.

        Raises
        ------
        ValueError, TypeError
            For an unknown block type or property, a property or field of the wrong type or value,
            or params/vars that name nothing in the layers. The message names the entry by its
            0-based index and name and the field, and says what was expected:
            ``DagNN.loadobj: layers[0] ('conv1'): block.pad must be 1, 2 or 4 non-negative whole
            numbers, got 1.5``.

        Examples
        --------
        >>> from cnnx.dagnn import DagNN, ReLU
        >>> net = DagNN()
        >>> net.add_layer('relu', ReLU(leak=0.1), 'x0', 'x1')
        >>> DagNN.loadobj(net.saveobj()).layers[0].block.leak
        0.1
        """
        if isinstance(s, DagNN):
            return s
        if not isinstance(s, dict) or "layers" not in s:
            raise TypeError(f"DagNN.loadobj: expected a dict with 'layers', got {type(s).__name__}")
        layers = _record(s["layers"], "layers")
        if layers and all("block" not in layer and "type" in layer and not str(layer["type"]).startswith("dagnn.")
                          for layer in layers):
            warnings.warn("DagNN.loadobj: the structure is a SimpleNN network; converting it with "
                          "from_simplenn", stacklevel=2)
            return cls.from_simplenn(s)
        types = dict(_BLOCK_TYPES)
        types.update(blocks or {})
        net = cls()
        for k, layer in enumerate(layers):
            label = _label("layers", k, layer.get("name"))
            with _naming(label):
                name = _text("DagNN.loadobj", "name", layer.get("name"))
                type_name = _text("DagNN.loadobj", "type", layer.get("type"))
                block_class = types.get(type_name)
                if block_class is None:
                    raise ValueError(f"DagNN.loadobj: {label} has unknown block type '{type_name}' (known: "
                                     f"{', '.join(sorted(types))}; pass blocks={{type: class}} for others)")
                properties = layer.get("block")
                if properties is not None and not isinstance(properties, dict):
                    raise _property_error("DagNN.loadobj", "block", "a struct (a dict) of the block's properties",
                                          properties, TypeError)
                block = block_class()
                with _naming(label, "block."):
                    block.load(properties or {})
                inputs, outputs, params = (_names(layer.get(f), f) for f in ("inputs", "outputs", "params"))
                try:
                    net.add_layer(name, block, inputs, outputs, params)
                except (TypeError, ValueError) as error:
                    reason = str(error)
                    for prefix in ("DagNN.add_layer: ", "DagNN: ", f"layer '{name}': "):
                        reason = reason.removeprefix(prefix)
                    raise type(error)(f"DagNN.loadobj: {label}: {reason}") from None
        fields = {"value": "value", "learningRate": "learning_rate", "weightDecay": "weight_decay",
                  "trainMethod": "train_method"}
        for k, saved in enumerate(_record(s.get("params", []), "params")):
            label = _label("params", k, saved.get("name"))
            with _naming(label):
                param = net.params[net._saved_target(net._param_index, label, saved)]
                for key, value in saved.items():
                    if key == "name":
                        continue
                    if key not in fields:
                        raise ValueError(f"DagNN.loadobj: {label}: unknown field '{key}' (the fields of a "
                                         f"parameter: name, {', '.join(fields)})")
                    setattr(param, fields[key], _param_field(key, value))
        for k, saved in enumerate(_record(s.get("vars", []), "vars")):
            label = _label("vars", k, saved.get("name"))
            with _naming(label):
                var = net.vars[net._saved_target(net._var_index, label, saved)]
                for key, value in saved.items():
                    if key == "precious":
                        var.precious = _bool("DagNN.loadobj", "precious", value)
                    elif key not in ("name", "value", "der", "fanin", "fanout"):
                        raise ValueError(f"DagNN.loadobj: {label}: unknown field '{key}' (the fields of a "
                                         "variable: name, precious, value, der, fanin, fanout)")
        for key, value in s.items():
            if key == "meta":
                net.meta = _copy.deepcopy(value) if value is not None else {}
            elif key == "conserveMemory":  # written by some MatConvNet versions
                with _naming(None):
                    net.conserve_memory = _bool("DagNN.loadobj", "conserveMemory", value)
            elif key not in ("vars", "params", "layers"):
                warnings.warn(f"DagNN.loadobj: ignoring unknown field '{key}'", stacklevel=2)
        return net

    @staticmethod
    def _saved_target(index, label, saved):
        """The index of the saved parameter or variable ``saved``, which must be used by a layer."""
        name = _text("DagNN.loadobj", "name", saved.get("name"))
        i = index.get(name)
        if i is None:
            raise ValueError(f"DagNN.loadobj: {label} is not used by any layer")
        return i

    def copy(self):
        """An independent copy (MatConvNet: ``loadobj(saveobj(net))``; values are copied)."""
        blocks = {layer.block.block_type(): type(layer.block) for layer in self.layers}
        net = DagNN.loadobj(self.saveobj(), blocks=blocks)
        net.mode = self.mode
        net.conserve_memory = self.conserve_memory
        net.accumulate_param_ders = self.accumulate_param_ders
        return net

    @classmethod
    def from_simplenn(cls, net, canonical_names=False):
        """Convert a SimpleNN network (a chain) to a DagNN, with MatConvNet's naming rules.

        Variables are ``x0`` (input), ``x1``, ... (``xi`` is the output of layer i); a
        ``softmaxloss`` layer gets a second input ``label`` (then ``label1``, ``label2``, ...) and
        becomes ``Loss(loss='softmaxlog')``. Parameters are ``<layer>f`` and ``<layer>b`` for conv
        (no ``b`` without biases) and ``<layer>a`` for prelu, keeping the layer's
        ``learningRate`` and ``weightDecay``. With ``canonical_names`` the input is ``input``, each
        loss output ``objective`` (then ``objective1``, ...) and each loss's first input
        ``prediction``. Values are copied. Supported types: conv, pool, relu, prelu, dropout,
        softmaxloss.

        Parameters
        ----------
        net : dict
            ``{'layers': [...], 'meta': {...}}`` (filled by ``vl_simplenn_tidy`` first).
        canonical_names : bool, default False
            Rename some variables as above.

        Raises
        ------
        ValueError
            For a layer type without a DagNN block (e.g. 'custom').

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.dagnn import DagNN
        >>> simple = {'layers': [
        ...     {'type': 'conv', 'name': 'conv1', 'weights': [np.zeros((3, 3, 1, 2), np.float32),
        ...                                                 np.zeros((1, 2), np.float32)], 'pad': 1},
        ...     {'type': 'relu'}, {'type': 'softmaxloss'}]}
        >>> dag = DagNN.from_simplenn(simple, canonical_names=True)
        >>> [v.name for v in dag.vars], [p.name for p in dag.params]
        (['input', 'x1', 'prediction', 'label', 'objective'], ['conv1f', 'conv1b'])
        """
        from .simplenn import vl_simplenn_tidy

        tidy = vl_simplenn_tidy(net)
        dag = cls()
        dag.meta = _copy.deepcopy(tidy["meta"])
        for l, layer in enumerate(tidy["layers"], start=1):
            name = layer["name"]
            inputs, outputs = [f"x{l - 1}"], [f"x{l}"]
            kind = layer["type"]
            weights = list(layer.get("weights") or [])
            if kind == "conv":
                filters = weights[0]
                has_bias = len(weights) > 1 and weights[1] is not None and np.size(weights[1]) > 0
                block = Conv(size=np.shape(filters), pad=layer["pad"], stride=layer["stride"],
                             dilate=layer.get("dilate", 1), has_bias=has_bias, opts=_cell(layer.get("opts")))
                param_names = [f"{name}f"] + ([f"{name}b"] if has_bias else [])
            elif kind == "pool":
                block = Pooling(method=layer["method"], pool_size=layer["pool"], pad=layer["pad"],
                                stride=layer["stride"], opts=_cell(layer.get("opts")))
                param_names = []
            elif kind == "relu":
                block, param_names = ReLU(leak=layer["leak"]), []
            elif kind == "prelu":
                block, param_names = PReLU(num_channels=np.size(weights[0])), [f"{name}a"]
            elif kind == "dropout":
                block, param_names = DropOut(rate=layer["rate"]), []
            elif kind == "softmaxloss":
                block, param_names = Loss(loss="softmaxlog"), []
                inputs.append(dag._new_var_name("label"))
            else:
                raise ValueError(f"DagNN.from_simplenn: layers[{l - 1}] ('{name}') has type '{kind}', which has no "
                                 f"DagNN block (supported: conv, pool, relu, prelu, dropout, softmaxloss)")
            dag.add_layer(name, block, inputs, outputs, param_names)
            rates = np.ravel(layer["learningRate"]) if "learningRate" in layer else ()
            decays = np.ravel(layer["weightDecay"]) if "weightDecay" in layer else ()
            for j, param_name in enumerate(param_names):
                param = dag.get_param(param_name)
                if weights[j] is not None and np.size(weights[j]) > 0:
                    param.value = np.array(weights[j], order="K")
                if j < len(rates):
                    param.learning_rate = float(rates[j])
                if j < len(decays):
                    param.weight_decay = float(decays[j])
        if canonical_names:
            dag._canonical_names()
        return dag

    def _new_var_name(self, prefix):
        name, t = prefix, 0
        while name in self._var_index:
            t += 1
            name = f"{prefix}{t}"
        return name

    def _canonical_names(self):
        for l, layer in enumerate(self.layers):
            if l == 0:
                self.rename_var(layer.inputs[0], "input")
            if isinstance(layer.block, Loss):
                self.rename_var(layer.outputs[0], self._new_var_name("objective"))
                if not layer.inputs[0].startswith("prob"):
                    self.rename_var(layer.inputs[0], self._new_var_name("prediction"))


def _param_field(key, value):
    if key == "value":
        if value is None or (not isinstance(value, np.ndarray) and np.size(value) == 0):
            return None
        array = np.array(value, order="K") if not isinstance(value, np.ndarray) else value
        if array.dtype not in (np.float32, np.float64):
            raise _property_error("DagNN.loadobj", "value", "a float32 or float64 array", value, TypeError)
        return np.array(array, order="K")
    if key == "trainMethod":
        return _choice("DagNN.loadobj", "trainMethod", value, ("gradient", "average"))
    return _real("DagNN.loadobj", key, value)


def _label(what, index, name):
    """``layers[2] ('conv2')``: an entry of a saved struct array by its 0-based index and name."""
    return f"{what}[{index}]" + (f" ('{name}')" if isinstance(name, str) else "")


@contextlib.contextmanager
def _naming(label, prefix=""):
    """Re-raise a property's error as ``DagNN.loadobj: <label>: <prefix><name> must be ...``."""
    try:
        yield
    except (TypeError, ValueError) as error:
        if type(error) not in (TypeError, ValueError):
            raise  # a subclass may need other constructor arguments: leave it alone
        found = getattr(error, "cnnx_property", None)
        if found is None:
            if label is None or str(error).startswith("DagNN.loadobj: "):
                raise
            raise type(error)(f"DagNN.loadobj: {label}: {error}") from None
        _, name, expected, value = found
        where = f"{label}: " if label is not None else ""
        raise type(error)(f"DagNN.loadobj: {where}{prefix}{name} must be {expected}, got {_show(value)}") from None


def _table(header, rows):
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in [header] + rows]
    return "\n".join(lines)


def _bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
