"""The registry of layer kinds: one entry per SimpleNN type, indexed also by DagNN block type.

Each kind module of :mod:`cnnx.layers` registers its SimpleNN type with :func:`register_layer_type`
(and its DagNN block class with it, or with :func:`register_block` for blocks SimpleNN has not).
``vl_simplenn``, ``vl_simplenn_tidy``, ``vl_simplenn_display``, ``DagNN.from_simplenn``,
``DagNN.loadobj`` and the model files consult these two tables and nothing else.

Examples
--------
>>> from cnnx.layers.registry import BLOCK_TYPES, LAYER_TYPES
>>> LAYER_TYPES['pool'].block is BLOCK_TYPES['dagnn.Pooling']
True
"""
from collections import namedtuple

__all__ = ["BLOCK_TYPES", "LAYER_TYPES", "Conversion", "LayerType", "register_block", "register_layer_type"]

# SimpleNN type name -> LayerType, in registration order.
LAYER_TYPES = {}
# DagNN block type name (``type_name``, e.g. 'dagnn.Conv') -> Layer subclass.
BLOCK_TYPES = {}

Conversion = namedtuple("Conversion", ["block", "params", "inputs"], defaults=[(), ()])
Conversion.__doc__ = """How ``DagNN.from_simplenn`` builds one layer: the block, the suffixes of its
parameter names (one per SimpleNN weight it takes, in order: ``('f', 'b')`` names ``conv1f`` and
``conv1b``) and the prefixes of its inputs after the chained one (``('label',)``).

Examples
--------
>>> from cnnx.layers import Loss
>>> from cnnx.layers.registry import Conversion
>>> Conversion(Loss(), inputs=('label',)).params
()
"""


class LayerType:
    """How SimpleNN runs, checks and describes one layer type, and how it becomes a DagNN layer.

    Build one with :func:`register_layer_type`; the attributes are those of its arguments.

    Examples
    --------
    >>> from cnnx.simplenn import LAYER_TYPES
    >>> LAYER_TYPES['conv'].defaults
    {'pad': 0, 'stride': 1, 'dilate': 1, 'opts': []}
    """

    def __init__(self, name, forward, backward, defaults, options, tidy, check, geometry, data_size,
                 abbreviation, weight_ndims, weight_train_methods, loss, holds_functions, block, to_dagnn,
                 backward_from_output, backward_reads_output, frees_output, fresh_results):
        self.name = name
        self.forward = forward
        self.backward = backward
        self.defaults = dict(defaults or {})
        self.options = dict(options or {})
        self.tidy = tidy
        self.check = check
        self.geometry = geometry
        self.data_size = data_size
        self.abbreviation = abbreviation
        self.weight_ndims = tuple(weight_ndims)
        self.weight_train_methods = tuple(weight_train_methods)
        self.loss = loss
        self.holds_functions = holds_functions
        self.block = block
        self.to_dagnn = to_dagnn
        self.backward_from_output = backward_from_output
        self.backward_reads_output = backward_reads_output
        self.frees_output = frees_output
        self.fresh_results = fresh_results

    def __repr__(self):
        return f"LayerType({self.name!r})"


def register_block(block):
    """Make a DagNN block class known by its ``type_name`` (to ``DagNN.loadobj`` and model files).

    Parameters
    ----------
    block : type
        A :class:`cnnx.layers.Layer` subclass with a ``type_name``.

    Returns
    -------
    type
        ``block``, so that this can decorate the class.

    Raises
    ------
    TypeError
        If ``block`` has no ``type_name`` of its own.

    Examples
    --------
    >>> from cnnx.layers import Layer
    >>> from cnnx.layers.registry import BLOCK_TYPES, register_block
    >>> class Twice(Layer):
    ...     type_name = 'mine.Twice'
    >>> register_block(Twice) is BLOCK_TYPES['mine.Twice']
    True
    >>> del BLOCK_TYPES['mine.Twice']
    """
    type_name = block.__dict__.get("type_name") if isinstance(block, type) else None
    if not isinstance(type_name, str) or not type_name:
        raise TypeError(f"register_block: {block!r} must be a Layer subclass with its own type_name")
    BLOCK_TYPES[type_name] = block
    return block


def register_layer_type(name, forward, backward, *, defaults=None, options=None, tidy=None, check=None,
                        geometry=None, data_size=None, abbreviation=None, weight_ndims=(),
                        weight_train_methods=(), loss=False, holds_functions=False, block=None, to_dagnn=None,
                        backward_from_output=None, backward_reads_output=True, frees_output=False,
                        fresh_results=False, replace=False):
    """Teach SimpleNN a layer type: how to run it, check it, show it and convert it to DagNN.

    Parameters
    ----------
    name : str
        The value of ``layer['type']``.
    forward : callable
        ``forward(layer, res_i, res_ip1, ctx)`` reads ``res_i['x']`` and stores the output in
        ``res_ip1['x']`` (and anything backward needs in ``res_ip1['aux']``). ``ctx`` is a dict with
        ``'mode'`` (``'normal'`` or ``'test'``), ``'rng'`` (the ``rng`` option of
        :func:`vl_simplenn`), ``'der_input'`` (False when backward may skip ``res_i['dzdx']``),
        ``'overwrite_input'`` (True when forward may write its output over ``res_i['x']``, which
        is freed after it), ``'backward'`` (True when this call back-propagates through the
        layer, so forward may keep in ``aux`` what spares backward work), ``'output_freed'``
        (see ``frees_output``) and
        ``'overwrite_der_output'`` (True when backward may write ``res_i['dzdx']`` over
        ``res_ip1['dzdx']``, likewise).
    backward : callable
        ``backward(layer, res_i, res_ip1, ctx)`` reads ``res_ip1['dzdx']`` (and ``res_i['x']``,
        ``res_ip1['x']``, ``res_ip1['aux']``), stores the input derivative in ``res_i['dzdx']`` and
        returns the list of derivatives of ``layer['weights']`` (or None for a type without
        weights). :func:`vl_simplenn` stores or accumulates that list in ``res_i['dzdw']``.
    defaults : dict, optional
        Fields :func:`vl_simplenn_tidy` fills when a layer lacks them (values are copied).
    options : dict, optional
        ``{field: cnnx._options.Option}``: fields that are block options, range-checked by
        :func:`vl_simplenn_tidy` with the blocks' own rules. :func:`vl_simplenn` leaves that to
        the block call itself. :func:`cnnx.load_matconvnet` reads these fields by their kind
        (whole numbers as ints, 'float' as a float, 'bool'/'flag' as a bool, 'choice' as a
        string) and names the field when a file holds something else; undeclared fields (other
        than the generic ``name``, ``type``, ``precious``, ``weights``, ``learningRate`` and
        ``weightDecay``) come back as MATLAB stores them (numbers as doubles).
    tidy : callable, optional
        ``tidy(layer)`` completes a layer beyond its field defaults, before ``check`` (bnorm adds
        its moments weight when a layer has only gains and biases). It gets the layer copy that
        :func:`vl_simplenn_tidy` returns, so it must replace, not change, shared values such as
        the ``weights`` list.
    check : callable, optional
        ``check(layer, where)`` raises ValueError or TypeError, starting the message with the
        string ``where`` (which names the layer), when the layer is malformed (missing fields,
        weights of the wrong number, type or shape). Runs on every :func:`vl_simplenn` call, so it
        should be cheap.
    geometry : callable, optional
        ``geometry(layer)`` returns a dict with any of ``support`` ([h, w] window extent),
        ``num_filters``, ``filter_depth``, ``dilate`` for :func:`vl_simplenn_display`. Missing
        entries: support 1 and 'n/a'.
    data_size : callable, optional
        ``data_size(layer, in_size, out_size)`` returns the [H, W, C, N] output size given the input
        size and the size from the sliding-window formula (whose C and N are the input's).
    abbreviation : callable or str, optional
        The type as shown in the display table (a callable gets the layer). Default: ``name``.
    weight_ndims : sequence of int, optional
        For each weight, the number of dimensions it has in full; :mod:`cnnx.io` restores the
        trailing singleton dimensions MATLAB drops (0: leave as stored).
    weight_train_methods : sequence of str, optional
        For each weight, how :func:`cnnx.cnn_train` learns it: ``'gradient'`` (the solver, the
        default for missing entries) or ``'average'`` (a running average of the derivative
        backward returns, as bnorm's moments).
    loss : bool, default False
        The output is an objective: kept when conserving memory, shown as 1x1x1x1 data.
    holds_functions : bool, default False
        The layers hold functions (as ``'custom'`` ones): model files cannot store them, and such
        a layer in a MATLAB file (its MATLAB functions) cannot be loaded.
    block : type, optional
        The DagNN block class of this type (a :class:`cnnx.layers.Layer` subclass with a
        ``type_name``); it is registered with :func:`register_block`, so that ``DagNN.loadobj`` and
        :func:`cnnx.load_matconvnet` rebuild it.
    to_dagnn : callable, optional
        ``to_dagnn(layer)`` returns the :class:`Conversion` (block, parameter-name suffixes, extra
        input prefixes) of a tidied layer for ``DagNN.from_simplenn``; without it that conversion
        says the type has no DagNN block.
    backward_from_output : callable, optional
        ``backward_from_output(layer)`` is True when backward can do without ``res_i['x']``
        (reading ``res_ip1['x']`` instead, as a ReLU with ``leak >= 0`` can): then
        :func:`vl_simplenn`, conserving memory in a backward call, frees the layer's input right
        after forward (MatConvNet's DagNN ReLU short circuit) when the layer before it does not
        read that value as its output. Default: never.
    backward_reads_output : bool, default True
        Whether backward may read ``res_ip1['x']``, the layer's own output (so that it is never
        freed for the next layer's ``backward_from_output``), unless ``frees_output``.
    frees_output : bool, default False
        Whether forward, told by ``ctx['output_freed']`` that its output will be freed before its
        backward runs, keeps in ``res_ip1['aux']`` what backward needs of it (as a ReLU keeps its
        signs): then the output is freed for the next layer's ``backward_from_output`` even if
        ``backward_reads_output``.
    fresh_results : bool, default False
        Whether ``forward`` stores in ``res_ip1['x']``, and ``backward`` in ``res_i['dzdx']``,
        either an array that nothing else holds or the very array it read (``res_i['x']``,
        ``res_ip1['dzdx']``). :func:`vl_simplenn`, conserving memory, then lets the next layer
        write its result over such an array where it frees it (``ctx['overwrite_input']``,
        ``ctx['overwrite_der_output']``).
    replace : bool, default False
        Allow replacing an already registered type.

    Returns
    -------
    LayerType
        The registered entry.

    Raises
    ------
    ValueError
        If ``name`` is already registered and ``replace`` is false.
    TypeError
        If ``forward``, ``backward``, ``tidy``, ``to_dagnn`` or ``backward_from_output`` is not
        callable, or ``block`` has no ``type_name``.

    Examples
    --------
    >>> from cnnx.simplenn import register_layer_type
    >>> def forward(layer, res_i, res_ip1, ctx):
    ...     res_ip1['x'] = 2 * res_i['x']
    >>> def backward(layer, res_i, res_ip1, ctx):
    ...     res_i['dzdx'] = 2 * res_ip1['dzdx']
    >>> entry = register_layer_type('double', forward, backward, replace=True)
    >>> entry
    LayerType('double')
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_layer_type: name must be a non-empty string, got {name!r}")
    if name in LAYER_TYPES and not replace:
        raise ValueError(f"register_layer_type: layer type '{name}' is already registered (pass replace=True)")
    for label, fn in (("forward", forward), ("backward", backward), ("tidy", tidy or callable),
                      ("to_dagnn", to_dagnn or callable), ("backward_from_output", backward_from_output or callable)):
        if not callable(fn):
            raise TypeError(f"register_layer_type: {label} must be callable, got {type(fn).__name__}")
    if block is not None:
        register_block(block)
    entry = LayerType(name, forward, backward, defaults, options, tidy, check, geometry, data_size,
                      abbreviation or name, weight_ndims, weight_train_methods, loss, holds_functions, block,
                      to_dagnn, backward_from_output or (lambda layer: False), bool(backward_reads_output),
                      bool(frees_output), bool(fresh_results))
    LAYER_TYPES[name] = entry
    return entry
