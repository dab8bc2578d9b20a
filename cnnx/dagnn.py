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
import sys
import time
import warnings

import numpy as np

from .layers import (BLOCK_TYPES, ELU, GELU, LAYER_TYPES, LRN, SELU, AffineGridGenerator, BatchNorm,
                     BilinearSampler, ClippedReLU, Concat, Conv, ConvTranspose, Crop, DropOut, ElementWise, Layer,
                     Loss, NormOffset, PDist, Pooling, PReLU, ReLU, ROIPooling, Scale, Sigmoid, SiLU, SoftMax, Softplus,
                     SpatialNorm, Sum, Tanh, UniformScalingGridGenerator)
from .layers.base import cell, choice, flag, layer_label, property_error, real, run_layer, show, text

__all__ = [
    "AffineGridGenerator", "BatchNorm", "BilinearSampler", "ClippedReLU", "Concat", "Conv", "ConvTranspose", "Crop",
    "DagLayer", "DagNN", "DropOut", "ELU", "ElementWise", "GELU", "LRN", "Layer", "Loss", "NormOffset", "PDist",
    "PReLU", "Param", "Pooling", "ROIPooling", "ReLU", "SELU", "Scale", "Sigmoid", "SiLU", "SoftMax", "Softplus",
    "SpatialNorm", "Sum", "Tanh", "UniformScalingGridGenerator", "Var",
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



def _names(value, what):
    """A list of names from a string or a sequence of strings (MATLAB: a char or a cell of chars)."""
    names = cell(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise property_error("DagNN", what, "non-empty strings", name, TypeError)
    return names


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
        'test' makes dropout the identity and batch normalisation use its moments parameter.
        'train' is accepted as 'normal'.
    conserve_memory : bool, default True
        Free intermediate values and derivatives once no layer needs them (see :meth:`eval`);
        ``var.precious = True`` keeps a variable.
    accumulate_param_ders : bool, default False
        Add parameter derivatives to those of the previous ``eval`` instead of overwriting them
        (for sub-batches).
    input_derivatives : bool, default True
        Compute the derivatives of the network inputs (as SimpleNN's ``InputDerivative``). False
        leaves them None and spares the layers that lead only to inputs their input derivatives
        (for a first convolution a whole GEMM); training needs none of them.
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
        self.input_derivatives = True
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
        for p, method in zip(layer.param_indexes, block.param_train_methods):
            self.params[p].train_method = method
        for p, rate in zip(layer.param_indexes, block.param_learning_rates):
            if rate is not None:
                self.params[p].learning_rate = float(rate)
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

    def get_label_inputs(self):
        """Names of the network inputs that layers read only as labels (their blocks' ``label_inputs``,
        such as a Loss's second input): ``eval`` may go without them, and ``cnn_train`` checks them
        as labels.

        Examples
        --------
        >>> from cnnx.dagnn import DagNN, Loss, ReLU
        >>> net = DagNN()
        >>> net.add_layer('relu', ReLU(), 'input', 'x1')
        >>> net.add_layer('loss', Loss(), ['x1', 'label'], 'objective')
        >>> net.get_label_inputs()
        ['label']
        """
        return [var.name for v, var in enumerate(self.vars) if var.fanin == 0 and self._reader_of_data(v) is None]

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

        Every network input must be given, except labels (inputs that blocks read only as their
        ``label_inputs``, such as a Loss's second): without them those layers are skipped, so a
        network can run for prediction alone. Forward runs the layers in ``execution_order``.
        Every call starts from scratch: values and derivatives of all variables are cleared first.

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
        """Every network input must be given, except labels (see :meth:`get_label_inputs`)."""
        for v, var in enumerate(self.vars):
            if var.fanin or var.value is not None:
                continue
            other = self._reader_of_data(v)
            if other is not None:
                raise ValueError(f"DagNN.eval: the network input '{var.name}' (read by layer '{other.name}') "
                                 f"is not given")

    def _reader_of_data(self, v):
        """The first layer that reads variable ``v`` other than as one of its block's ``label_inputs``."""
        return next((layer for layer in self.layers
                     if any(i == v and k not in layer.block.label_inputs for k, i in enumerate(layer.input_indexes))),
                    None)

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
            # Backward needs the inputs of every layer, or the outputs of a short-circuit one, or
            # neither (backward_reads_values False).
            for l, layer in enumerate(self.layers):
                if not layer.block.backward_reads_values:
                    continue
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
            outputs = run_layer("DagNN.eval", l, layer.name, layer.block.forward, values, params)
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

    def _derivatives_needed(self):
        """For each variable, whether backward computes its derivative: a network input's only with
        ``input_derivatives``, another's only if it leads back to a parameter or such an input."""
        needed = [self.input_derivatives and v.fanin == 0 for v in self.vars]
        for l in self.execution_order:
            layer = self.layers[l]
            leads = bool(layer.param_indexes) or any(
                needed[v] for k, v in enumerate(layer.input_indexes) if k not in layer.block.label_inputs)
            for v in layer.output_indexes:
                needed[v] = leads
        return needed

    def _backward(self, der_pairs, short_circuit):
        for name, der in der_pairs:
            self._set_output_derivative(name, der)
        param_refs = [0] * len(self.params)
        needed = self._derivatives_needed()
        for l in reversed(self.execution_order):
            layer = self.layers[l]
            der_outputs = [self.vars[v].der for v in layer.output_indexes]
            if any(der is None for der in der_outputs):
                continue
            block = layer.block
            block.needs_input_der = tuple(needed[v] and k not in block.label_inputs
                                          for k, v in enumerate(layer.input_indexes))
            sources = layer.output_indexes if short_circuit[l] else layer.input_indexes
            values = [self.vars[v].value for v in sources]
            # cannot happen: forward keeps these for a block whose backward reads them
            if block.backward_reads_values and any(value is None for value in values):
                raise RuntimeError(f"DagNN.eval: layer '{layer.name}': a value needed by backward was freed")
            params = self._param_values(layer)
            if self.conserve_memory:
                for v in layer.output_indexes:
                    var = self.vars[v]
                    if not var.precious and var.fanout > 0:
                        var.value = var.der = None
            start = time.perf_counter()
            result = run_layer("DagNN.eval", l, layer.name, block.backward, values, params, der_outputs)
            layer.backward_time = time.perf_counter() - start
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise ValueError(f"DagNN.eval: layer '{layer.name}': {type(layer.block).__name__}.backward must "
                                 f"return (der_inputs, der_params)")
            der_inputs, der_params = result
            self._check_count(layer, "backward", "input derivatives", der_inputs, len(layer.inputs))
            self._check_count(layer, "backward", "parameter derivatives", der_params, len(layer.params))
            for v, der, wanted in zip(layer.input_indexes, der_inputs, block.needs_input_der):
                if der is not None and wanted:
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
        types = dict(BLOCK_TYPES)
        types.update(blocks or {})
        net = cls()
        for k, layer in enumerate(layers):
            label = layer_label("layers", k, layer.get("name"))
            with _naming(label):
                name = text("DagNN.loadobj", "name", layer.get("name"))
                type_name = text("DagNN.loadobj", "type", layer.get("type"))
                block_class = types.get(type_name)
                if block_class is None:
                    raise ValueError(f"DagNN.loadobj: {label} has unknown block type '{type_name}' (known: "
                                     f"{', '.join(sorted(types))}; pass blocks={{type: class}} for others)")
                properties = layer.get("block")
                if properties is not None and not isinstance(properties, dict):
                    raise property_error("DagNN.loadobj", "block", "a struct (a dict) of the block's properties",
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
            label = layer_label("params", k, saved.get("name"))
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
            label = layer_label("vars", k, saved.get("name"))
            with _naming(label):
                var = net.vars[net._saved_target(net._var_index, label, saved)]
                for key, value in saved.items():
                    if key == "precious":
                        var.precious = flag("DagNN.loadobj", "precious", value)
                    elif key not in ("name", "value", "der", "fanin", "fanout"):
                        raise ValueError(f"DagNN.loadobj: {label}: unknown field '{key}' (the fields of a "
                                         "variable: name, precious, value, der, fanin, fanout)")
        for key, value in s.items():
            if key == "meta":
                net.meta = _copy.deepcopy(value) if value is not None else {}
            elif key == "conserveMemory":  # written by some MatConvNet versions
                with _naming(None):
                    net.conserve_memory = flag("DagNN.loadobj", "conserveMemory", value)
            elif key not in ("vars", "params", "layers"):
                warnings.warn(f"DagNN.loadobj: ignoring unknown field '{key}'", stacklevel=2)
        return net

    @staticmethod
    def _saved_target(index, label, saved):
        """The index of the saved parameter or variable ``saved``, which must be used by a layer."""
        name = text("DagNN.loadobj", "name", saved.get("name"))
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
        net.input_derivatives = self.input_derivatives
        return net

    @classmethod
    def from_simplenn(cls, net, canonical_names=False):
        """Convert a SimpleNN network (a chain) to a DagNN, with MatConvNet's naming rules.

        Variables are ``x0`` (input), ``x1``, ... (``xi`` is the output of layer i); a
        ``softmaxloss`` layer gets a second input ``label`` (then ``label1``, ``label2``, ...) and
        becomes ``Loss(loss='softmaxlog')``. Parameters are ``<layer>f`` and ``<layer>b`` for conv
        (no ``b`` without biases), ``<layer>a`` for prelu and ``<layer>m``, ``<layer>b``,
        ``<layer>x`` for bnorm (gains, biases, moments), keeping the layer's
        ``learningRate`` and ``weightDecay``. With ``canonical_names`` the input is ``input``, a
        SoftMax's output ``prob`` and its input ``prediction`` (see ``Layer.canonical_output``), each
        loss output ``objective`` (then ``objective1``, ...) and each loss's first input
        ``prediction`` unless it is a ``prob``. Values are copied. Each layer converts as its type's ``to_dagnn`` says
        (:func:`cnnx.simplenn.register_layer_type`); built in: conv, pool, relu, prelu, dropout,
        bnorm, softmaxloss, loss (a Loss of its type and opts, with a ``label`` input), pdist (a
        PDist whose ``label`` input is the target).

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
        losses = []
        for l, layer in enumerate(tidy["layers"], start=1):
            name = layer["name"]
            kind = LAYER_TYPES[layer["type"]]
            if kind.to_dagnn is None:
                supported = ", ".join(t for t, entry in LAYER_TYPES.items() if entry.to_dagnn is not None)
                raise ValueError(f"DagNN.from_simplenn: layers[{l - 1}] ('{name}') has type '{kind.name}', which has "
                                 f"no DagNN block (supported: {supported})")
            block, suffixes, extra_inputs = kind.to_dagnn(layer)
            param_names = [f"{name}{suffix}" for suffix in suffixes]
            inputs = [f"x{l - 1}"] + [dag._new_var_name(prefix) for prefix in extra_inputs]
            dag.add_layer(name, block, inputs, [f"x{l}"], param_names)
            if kind.loss:
                losses.append(dag.layers[-1])
            weights = layer["weights"]
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
            dag._canonical_names(losses)
        return dag

    def _new_var_name(self, prefix):
        name, t = prefix, 0
        while name in self._var_index:
            t += 1
            name = f"{prefix}{t}"
        return name

    def _canonical_names(self, losses):
        if self.layers:
            self.rename_var(self.layers[0].inputs[0], "input")
        for layer in self.layers:
            if layer.block.canonical_output:
                self.rename_var(layer.outputs[0], self._new_var_name(layer.block.canonical_output))
                self.rename_var(layer.inputs[0], self._new_var_name("prediction"))
        for layer in losses:
            self.rename_var(layer.outputs[0], self._new_var_name("objective"))
            if not layer.inputs[0].startswith("prob"):
                self.rename_var(layer.inputs[0], self._new_var_name("prediction"))


def _param_field(key, value):
    if key == "value":
        if value is None or (not isinstance(value, np.ndarray) and np.size(value) == 0):
            return None
        array = np.array(value, order="K") if not isinstance(value, np.ndarray) else value
        if array.dtype not in (np.float32, np.float64):
            raise property_error("DagNN.loadobj", "value", "a float32 or float64 array", value, TypeError)
        return np.array(array, order="K")
    if key == "trainMethod":
        return choice("DagNN.loadobj", "trainMethod", value, ("gradient", "average"))
    return real("DagNN.loadobj", key, value)


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
        raise type(error)(f"DagNN.loadobj: {where}{prefix}{name} must be {expected}, got {show(value)}") from None


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
