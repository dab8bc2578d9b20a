"""What the layer kinds share: the DagNN block base class, property conversions, SimpleNN helpers.

Block properties may come from MATLAB structs (arrays, doubles, cells), so each setter converts
its value with one of the functions here, which raise errors that name the property and say what
was expected (``Conv: pad must be 1, 2 or 4 non-negative whole numbers, got 1.5``).
"""
import copy as _copy
import math
from functools import partial

import numpy as np

from .._checks import can_hold, is_placeholder
from .._options import (INT_OPTION_LIMIT, choice_value, real_number, truth_value, whole_numbers,
                        without_gpu_options)


# ------------------------------------------------------------------------------------------------
# Conversions of block properties
# ------------------------------------------------------------------------------------------------


def show(value):
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
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        if value.ndim == 0 and value.dtype.kind in "biufU":
            return show(value.item())
        if value.dtype.kind in "iuf" and value.size <= 8 and (value.ndim <= 1 or value.ndim == 2 and 1 in value.shape):
            shown = [show(v) for v in value.reshape(-1, order="F")]
            return shown[0] if value.ndim == 0 else "[" + ", ".join(shown) + "]"
        if value.dtype.kind == "U" and value.size == 1:
            return show(str(value.reshape(-1)[0]))
        return f"a {'x'.join(str(d) for d in value.shape)} {value.dtype} array"
    return repr(value)


def property_error(owner, name, expected, value, kind=ValueError):
    """``kind("Owner: name must be <expected>, got <value>")``, with its parts kept for re-wording.

    :meth:`Layer.load` and :meth:`DagNN.loadobj` name the property as the caller or the file did
    (``poolSize``, ``block.pad``) from the attribute ``cnnx_property = (owner, name, expected, value)``.
    """
    error = kind(f"{owner}: {name} must be {expected}, got {show(value)}")
    error.cnnx_property = (owner, name, expected, value)
    return error


def _whole_numbers(lengths, minimum):
    counts = sorted(lengths)
    sign = {0: "non-negative ", 1: "positive "}.get(minimum, "")
    if counts == [1]:
        return f"a {sign}whole number"
    text = str(counts[0]) if len(counts) == 1 else ", ".join(str(c) for c in counts[:-1]) + f" or {counts[-1]}"
    return f"{text} {sign}whole numbers"


def int_tuple(owner, name, value, lengths, minimum, expected=None, shown=None):
    """Whole numbers >= minimum (and below 2^62, as every integer option) as a tuple, read by
    ``cnnx._options``' rules; ``lengths`` maps a given length to an expansion."""
    expected = expected or _whole_numbers(lengths, minimum)
    shown = value if shown is None else shown
    try:
        ints = whole_numbers(owner, name, value)
    except (TypeError, ValueError) as error:
        raise property_error(owner, name, expected, shown, type(error)) from None
    if len(ints) not in lengths or min(ints) < minimum:
        raise property_error(owner, name, expected, shown)
    if max(ints) >= INT_OPTION_LIMIT:
        raise property_error(owner, name, f"{expected} below 2^62", shown)
    return tuple(ints[i] for i in lengths[len(ints)])


PAD4 = {1: (0, 0, 0, 0), 2: (0, 0, 1, 1), 4: (0, 1, 2, 3)}  # [p1 p2] means [p1 p1 p2 p2]
PAIR = {1: (0, 0), 2: (0, 1)}


def _scalar(owner, name, value, expected):
    """The one number in ``value`` (a Python or NumPy number, or a 1-element array)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.size != 1 or arr.dtype == object or arr.dtype.kind not in "biuf":
        raise property_error(owner, name, expected, value, TypeError)
    return arr.reshape(-1)[0].item()


def _by_rule(owner, name, expected, shown, rule, *args):
    """``rule(owner, name, *args)`` (one of ``cnnx._options``' rules), its error worded as a property's."""
    try:
        return rule(owner, name, *args)
    except (TypeError, ValueError) as error:
        raise property_error(owner, name, expected, shown, type(error)) from None


def real(owner, name, value, expected="a finite number", accept=math.isfinite):
    """A real number (``cnnx._options.real_number``) for which ``accept(number)`` holds, as a float."""
    number = _by_rule(owner, name, expected, value, real_number, _scalar(owner, name, value, expected))
    if not accept(number):
        raise property_error(owner, name, expected, value)
    return number


def param_vector(rule):
    """The conversion of a block's ``param`` vector by its block function's rule (a
    ``cnnx.normalize.ParamVector``: LRN, NormOffset, SpatialNorm), to a tuple of numbers."""
    def convert(owner, name, value):
        try:
            return rule.parse(owner, name, value)
        except (TypeError, ValueError) as error:
            raise property_error(owner, name, rule.expected, value, type(error)) from None
    return convert


def flag(owner, name, value):
    """True or false (``cnnx._options.truth_value``; MATLAB's doubles 0 and 1 too), as a bool."""
    number = _scalar(owner, name, value, "true or false")
    return _by_rule(owner, name, "true or false", value, truth_value, number, True)


def _one_string(value):
    """A 1-element string array (as MATLAB files give a char array) as its string; others as they are."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        return str(value.reshape(-1)[0])
    return value


def text(owner, name, value):
    value = _one_string(value)
    if not isinstance(value, str):
        raise property_error(owner, name, "a string", value, TypeError)
    return str(value)


def choice(owner, name, value, choices):
    """One of ``choices`` (``cnnx._options.choice_value``), as lower case."""
    expected = "one of " + ", ".join(f"'{c}'" for c in choices)
    value = _one_string(value)
    if not isinstance(value, str):
        raise property_error(owner, name, expected, value, TypeError)
    return _by_rule(owner, name, expected, value, choice_value, value, choices)


def cell(value):
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
# DagNN blocks
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
    ``backward_reads_values = False`` declares that ``backward`` reads neither (forward kept what
    it needs, as a pooling about to be back-propagated keeps its winners): then, conserving memory,
    the network frees them as their other readers allow and ``backward`` may get None for them.

    What the graphs and the trainer read, instead of the block's class: ``label_inputs`` (the
    positions of the inputs that are labels: a network may omit them to predict only, and they get
    no derivative), ``param_ndims`` (for each parameter, its number of dimensions in full, which
    model files restore when MATLAB dropped trailing singletons; 0 leaves it as stored),
    ``param_train_methods`` (for each parameter, 'gradient' or 'average': learned by the solver, or
    a running average of what backward returns, as bnorm's moments; :meth:`DagNN.add_layer` sets
    the parameters' ``train_method`` from it, missing entries leave 'gradient'),
    ``param_learning_rates`` (for each parameter, the ``learning_rate`` :meth:`DagNN.add_layer`
    gives it, as MatConvNet's blocks set in ``attach``: 0.1 for bnorm's moments; None and missing
    entries leave it as it is, 1 for a new parameter),
    ``reports_average`` (the block keeps a running ``average`` of its output per instance, since
    ``reset()``, which the trainer reports as a statistic under the output's name),
    ``canonical_output`` (with ``canonical_names``, :meth:`DagNN.from_simplenn` names the block's
    output so and its input ``prediction``, as MatConvNet names SoftMax's ``prob``; None leaves them).
    Before ``backward`` the graph sets ``needs_input_der``, one flag per input: whether anyone
    reads that input's derivative (not for labels, nor for network inputs when the network does not
    want them). A block may return None for the others (:meth:`input_der_needed`); the graph drops
    what it returns for them anyway.

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
    backward_reads_values = True
    label_inputs = ()
    param_ndims = ()
    param_train_methods = ()
    param_learning_rates = ()
    needs_input_der = ()
    reports_average = False
    canonical_output = None
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

    def input_der_needed(self, k):
        """Whether backward must compute the derivative of input ``k`` (always, outside a graph)."""
        return not self.needs_input_der or self.needs_input_der[k]

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
                raise property_error(found[0], key, found[2], found[3], type(error)) from None

    def _is_test_mode(self):
        return self.net is not None and self.net.mode == "test"

    def __repr__(self):
        props = ", ".join(f"{attr}={getattr(self, attr)!r}" for attr in self.saved_properties)
        return f"{type(self).__name__}({props})"


class Property:
    """A block property, converted and checked when set by ``convert(owner, name, value)`` (owner:
    the block's class name), which returns the value to keep or raises :func:`property_error`."""

    def __init__(self, convert, doc):
        self.convert = convert
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, block, owner=None):
        return self if block is None else block.__dict__[self.name]

    def __set__(self, block, value):
        block.__dict__[self.name] = self.convert(type(block).__name__, self.name, value)


def same_size(input_sizes):
    return [None if not input_sizes or input_sizes[0] is None else tuple(input_sizes[0])]


class ElementWise(Layer):
    """Base class of blocks that work at each spatial location on its own (MatConvNet's
    ``dagnn.ElementWise``): ReLU, PReLU, DropOut, Sum, Scale, Crop, ...

    What it provides is their size rule: the one output has the size of the first input
    (``get_output_sizes``); a subclass whose output differs (Crop) overrides it. MatConvNet's class
    also gives such blocks a 1 x 1 receptive field of stride 1, which cnnx does not compute.

    Examples
    --------
    >>> from cnnx.layers.base import ElementWise
    >>> class Square(ElementWise):
    ...     def forward(self, inputs, params):
    ...         return [inputs[0] ** 2]
    >>> Square().get_output_sizes([(8, 8, 3, 2)], [])
    [(8, 8, 3, 2)]
    """

    def get_output_sizes(self, input_sizes, param_sizes):
        return same_size(input_sizes)


def filter_bank_size(owner, name, value, layout):
    """A filter bank's 4 dimensions from MATLAB's size() of it, which drops trailing singletons
    (``[5 5 3]`` is ``[5 5 3 1]``); ``layout`` names them in the error (``'FH FW FC K'``)."""
    try:
        flat = np.asarray(value).reshape(-1)
    except (TypeError, ValueError):  # ragged nested sequences
        flat = np.asarray([None], dtype=object)
    if 2 <= flat.size < 4 and flat.dtype.kind in "biuf":
        flat = np.concatenate([flat, np.ones(4 - flat.size, dtype=flat.dtype)])
    expected = f"2 to 4 non-negative whole numbers [{layout}]"
    return int_tuple(owner, name, flat, {4: (0, 1, 2, 3)}, 0, expected=expected, shown=value)


class Filter(Layer):
    """Padding, stride and dilation shared by Conv and Pooling (MatConvNet's dagnn.Filter)."""

    pad = Property(partial(int_tuple, lengths=PAD4, minimum=0),
                   "[top, bottom, left, right] zero padding; 1 value for all, or [p1 p2] = [p1 p1 p2 p2].")
    stride = Property(partial(int_tuple, lengths=PAIR, minimum=1),
                      "[sy, sx] step of the window (1 value for both).")
    dilate = Property(partial(int_tuple, lengths=PAIR, minimum=1),
                      "[dy, dx] dilation of the window (1 value for both).")


class WithOpts:
    """The ``opts`` property of blocks that pass more name/value options to their block function.

    ``block_opts()`` is what the block function gets: ``opts`` without MatConvNet's GPU switches
    (``'cudnn'``, ``'nocudnn'``, ``'CudnnWorkspaceLimit'``, ...), which the CPU blocks have no use
    for; ``opts`` itself is saved as given.
    """

    opts = Property(lambda owner, name, value: tuple(cell(value)),
                    "More name/value options of the block function, as a tuple.")

    def block_opts(self):
        return without_gpu_options(self.opts)


# ------------------------------------------------------------------------------------------------
# What both graphs do alike
# ------------------------------------------------------------------------------------------------


def layer_label(what, index, name):
    """``layers[2] ('conv2')``: an entry of a network or a saved struct array by 0-based index and name."""
    return f"{what}[{index}]" + (f" ('{name}')" if isinstance(name, str) else "")


def run_layer(fname, index, name, step, *args):
    """``step(*args)``, whose TypeError or ValueError comes out with ``fname: layers[index] ('name'): ``
    in front: how SimpleNN and DagNN name the layer in a block's error."""
    try:
        return step(*args)
    except (TypeError, ValueError) as error:
        if type(error) not in (TypeError, ValueError):
            raise  # a subclass may need other constructor arguments: leave it alone
        raise type(error)(f"{fname}: {layer_label('layers', index, name)}: {error}") from error


# ------------------------------------------------------------------------------------------------
# SimpleNN layers (dicts with MatConvNet's fields)
# ------------------------------------------------------------------------------------------------


def weight(layer, j):
    """The j-th weight, or None for a missing entry or MATLAB's ``[]`` (see ``is_placeholder``).

    Other zero-size arrays are passed on, so that the block refuses them.
    """
    weights = layer["weights"]
    if j >= len(weights) or is_placeholder(weights[j]):
        return None
    return weights[j]


def reusable(ctx, flag, arr, reference):
    """``arr`` where ``vl_simplenn`` lets the layer write its result over it (``ctx[flag]``) and
    it can hold a result shaped like ``reference``; else None (a new array)."""
    return arr if ctx[flag] and can_hold(arr, reference) else None


def check_array(where, label, value):
    if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float64):
        kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise TypeError(f"{where}: {label} must be a float32 or float64 numpy array, got {kind}")


def check_weight_count(where, layer, count, what):
    weights = layer["weights"]
    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"{where}: 'weights' must be a list {what}, got {type(weights).__name__}")
    if len(weights) != count:
        raise ValueError(f"{where}: 'weights' must hold {count} arrays {what}, got {len(weights)}")


def require(where, layer, field, what):
    if field not in layer:
        raise ValueError(f"{where}: missing field '{field}' ({what})")


def pair(value):
    """A scalar or [y, x] layer field as two floats (for the display table)."""
    flat = [float(v) for v in np.ravel(value)]
    return flat * 2 if len(flat) == 1 else flat[:2]
