"""SimpleNN: a network that is a chain of layers, run forward and backward over cnnx's blocks.

A network is a plain dict shaped like MatConvNet's struct, so that ``.mat`` files round-trip
(:mod:`cnnx.io`)::

    net = {'layers': [{'type': 'conv', 'weights': [F, B], 'pad': 1}, {'type': 'relu'}, ...],
           'meta': {...}}

Each layer dict uses MatConvNet's field names (``type``, ``name``, ``weights``, ``pad``, ``stride``,
``dilate``, ``pool``, ``method``, ``leak``, ``rate``, ``class``, ``precious``, ``learningRate``,
``weightDecay``, ...). The graph code here only orders the block calls, keeps their values and
stores their derivatives; the math lives in the blocks. Each layer type is one :class:`LayerType`
in the registry of :mod:`cnnx.layers`, defined in its kind's module there together with its DagNN
block, so a new type is one call to :func:`register_layer_type`.
"""
import copy
import math
import sys
import time

import numpy as np

from ._options import Option, limit, parse_options
from ._shapes import window_output_size
from .layers.base import layer_label, run_layer
from .layers.base import pair as _pair
from .layers.registry import LAYER_TYPES, LayerType, register_layer_type

__all__ = [
    "LayerType",
    "register_layer_type",
    "vl_simplenn",
    "vl_simplenn_display",
    "vl_simplenn_tidy",
]


# ------------------------------------------------------------------------------------------------
# vl_simplenn_tidy
# ------------------------------------------------------------------------------------------------


def _tidy_layer(fname, index, layer, check_options):
    if not isinstance(layer, dict):
        raise TypeError(f"{fname}: layers[{index}] must be a dict, got {type(layer).__name__}")
    where = f"{fname}: {layer_label('layers', index, layer.get('name'))}"
    layer_type = layer.get("type")
    if not isinstance(layer_type, str):
        raise ValueError(f"{where}: missing or non-string 'type' (got {layer_type!r})")
    entry = LAYER_TYPES.get(layer_type)
    if entry is None:
        known = ", ".join(sorted(LAYER_TYPES))
        raise ValueError(f"{where}: unknown layer type '{layer_type}' (known types: {known})")
    layer = dict(layer)
    if "weights" not in layer and ("filters" in layer or "biases" in layer):
        # MatConvNet's legacy conv layout.
        layer["weights"] = [layer.pop("filters", None), layer.pop("biases", None)]
    layer.setdefault("weights", [])
    if isinstance(layer["weights"], tuple):
        layer["weights"] = list(layer["weights"])
    layer.setdefault("name", f"layer{index + 1}")
    layer.setdefault("precious", False)
    for field, value in entry.defaults.items():
        if field not in layer:
            layer[field] = copy.copy(value)
    if not isinstance(layer["name"], str):
        raise TypeError(f"{where}: 'name' must be a string, got {type(layer['name']).__name__}")
    if entry.tidy is not None:
        entry.tidy(layer)
    if entry.check is not None:
        entry.check(layer, where)
    if check_options and entry.options:
        parse_options(where, (), {field: layer[field] for field in entry.options}, entry.options)
    return layer


def vl_simplenn_tidy(net):
    """Return a copy of a SimpleNN network with MatConvNet's defaults filled and every layer checked.

    ``tnet = vl_simplenn_tidy(net)``

    As MatConvNet's tidy: every layer gets ``name = 'layer<k>'`` (k counting from 1) and
    ``precious = False``; conv layers ``pad = 0``, ``stride = 1``, ``dilate = 1``, ``opts = []``;
    pool layers ``pad = 0``, ``stride = 1``, ``opts = []`` and (unlike MatConvNet, whose tidy forgets
    it) ``method = 'max'``; relu ``leak = 0``; dropout ``rate = 0.5``; bnorm ``epsilon = 1e-5``
    and, when it has only gains and biases, zero moments ``weights[2]`` (C x 2, in the gains'
    precision; MatConvNet's are always single). Legacy ``filters``/``biases``
    fields become ``weights``, and top-level ``classes``/``normalization`` move into ``meta``
    (deriving ``meta['normalization']['cropSize']`` from ``border`` and ``imageSize``). Arrays are
    shared with ``net``, not copied.

    Parameters
    ----------
    net : dict
        ``{'layers': [layer dict, ...], 'meta': dict}``; ``meta`` is optional.

    Returns
    -------
    dict
        ``{'layers': [...], 'meta': {...}}``.

    Raises
    ------
    TypeError, ValueError
        For a net that is not such a dict, or a layer with an unknown type, a missing field or
        weight, or a weight or option of the wrong type, shape or range. The message names the
        layer by index and name, e.g. ``vl_simplenn_tidy: layers[2] ('conv2'): ...``.

    Examples
    --------
    >>> from cnnx.simplenn import vl_simplenn_tidy
    >>> net = vl_simplenn_tidy({'layers': [{'type': 'relu'}]})
    >>> net['layers'][0]['name'], net['layers'][0]['leak']
    ('layer1', 0.0)
    """
    return _tidy(net, "vl_simplenn_tidy", check_options=True)


def _tidy(net, fname, check_options):
    if not isinstance(net, dict) or "layers" not in net:
        raise TypeError(f"{fname}: net must be a dict with a 'layers' list, got {type(net).__name__}")
    if not isinstance(net["layers"], (list, tuple)):
        raise TypeError(f"{fname}: net['layers'] must be a list of layer dicts, got {type(net['layers']).__name__}")
    meta = dict(net.get("meta") or {})
    for legacy in ("classes", "normalization"):
        if legacy in net:
            meta[legacy] = net[legacy]
    normalization = meta.get("normalization")
    if (isinstance(normalization, dict) and "cropSize" not in normalization
            and "border" in normalization and "imageSize" in normalization):
        image = np.ravel(np.asarray(normalization["imageSize"], dtype=np.float64))[:2]
        normalization = dict(normalization)
        normalization["cropSize"] = image / (image + np.ravel(normalization["border"]))
        meta["normalization"] = normalization
    layers = [_tidy_layer(fname, i, layer, check_options) for i, layer in enumerate(net["layers"])]
    return {"layers": layers, "meta": meta}


# ------------------------------------------------------------------------------------------------
# vl_simplenn
# ------------------------------------------------------------------------------------------------

_SIMPLENN_OPTIONS = {
    "dzdy": Option("any"),
    "res": Option("any"),
    "mode": Option("choice", "normal", choices=("normal", "test", "train")),
    "conserve_memory": Option("bool", False),
    "accumulate": Option("bool", False),
    "back_prop_depth": Option("any", math.inf),
    "skip_forward": Option("bool", False),
    "cudnn": Option("bool", True, display="CuDNN"),
    "sync": Option("bool", False),
    "rng": Option("any"),
    "input_derivative": Option("bool", True),
}


def _new_res(num_layers):
    """An empty ``res`` list for a network of ``num_layers`` layers (one record more than layers)."""
    return [{"x": None, "dzdx": None, "dzdw": [], "aux": None, "stats": None, "time": 0.0,
             "backward_time": 0.0} for _ in range(num_layers + 1)]


def _split_positional(args):
    """Peel ``dzdy`` and ``res`` off the front of ``args`` (MatConvNet's positional slots)."""
    args = list(args)
    positional = []
    while args and not isinstance(args[0], str) and len(positional) < 2:
        positional.append(args.pop(0))
    return positional, args


def vl_simplenn(net, x, *args, **kwargs):
    """Evaluate a SimpleNN network forward, and backward when given the output derivative.

    ``res = vl_simplenn(net, x)`` runs forward; ``res = vl_simplenn(net, x, dzdy)`` also runs
    backward; ``res = vl_simplenn(net, x, dzdy, res, 'Name', value, ...)`` reuses ``res`` and takes
    MatConvNet's options as name/value pairs (case-insensitive) or Python keywords
    (``conserve_memory=True``).

    ``res`` is a list of ``len(net['layers']) + 1`` dicts: ``res[0]['x']`` is the input and
    ``res[i + 1]['x']`` the output of ``layers[i]``; after backward ``res[i]['dzdx']`` is the
    derivative with respect to ``res[i]['x']`` and ``res[i]['dzdw']`` the list of derivatives of
    ``layers[i]['weights']``. ``res[i]['time']`` and ``res[i]['backward_time']`` are the seconds
    spent in ``layers[i]``; ``res[i + 1]['aux']`` holds what a layer keeps for backward (the dropout
    mask).

    The softmaxloss layer takes its labels from ``layer['class']``. Layers run through their
    :class:`LayerType` (see :func:`register_layer_type`). Defaults are filled and the structure
    checked as :func:`vl_simplenn_tidy` does, so untidied nets work; option values are checked by
    the blocks. Every error raised inside a layer names it: ``vl_simplenn: layers[3] ('conv2'): ...``.

    Parameters
    ----------
    net : dict
        SimpleNN network ``{'layers': [...], 'meta': {...}}``.
    x : ndarray
        Input, H x W x C x N (float32 or float64).
    dzdy : ndarray or scalar, optional
        Derivative of the objective with respect to the output (usually 1). None or empty: forward
        only.
    res : list of dict, optional
        Results of an earlier call, reused (needed by ``SkipForward`` and ``Accumulate``).
    Mode : 'normal'
        ``'test'`` makes dropout the identity (forward and backward) and bnorm normalise by its
        moments ``weights[2]`` (forward; backward uses the batch's, as MatConvNet's).
        ``'train'`` means normal.
    ConserveMemory : False
        Free intermediate values as soon as they are not needed: forward only keeps the output;
        forward and backward keep ``res[0]``, ``res[-1]`` and every ``dzdw``. The output of a layer
        with ``precious = True`` and the output of a loss layer are kept. In a backward call the
        input of a ReLU is freed right after forward (it back-propagates from its output, as
        MatConvNet's DagNN ReLU short circuit does) when the layer before does not read it, and
        so is the input of a dropout layer (its backward reads only the mask, ``res[i + 1]['aux']``,
        which is freed with the layer's output). (cnnx only.) A ReLU or dropout layer writes its
        result over an array that is freed after it (its input in forward, its output derivative
        in backward) when that array is held by nothing but ``res`` (see ``fresh_results`` of
        :func:`register_layer_type`); never over ``x`` or ``dzdy``. The values are the same.
    Accumulate : False
        Add the parameter derivatives to those already in ``res`` instead of overwriting them.
    BackPropDepth : inf
        Back-propagate through the last ``BackPropDepth`` layers only.
    SkipForward : False
        Skip the forward pass and back-propagate from the values in ``res`` (needs ``dzdy`` and
        ``res``).
    CuDNN : True
        Accepted for compatibility; ignored (CPU blocks).
    Sync : False
        Accepted for compatibility; ignored.
    rng : None
        Passed to :func:`cnnx.vl_nndropout` as ``rng`` (seed or generator for the masks).
    input_derivative : True
        (cnnx only.) False skips the derivative with respect to the input of the first
        back-propagated layer (``res[0]['dzdx']`` stays None): training never uses it, and for a
        first convolution it is a whole GEMM.

    Returns
    -------
    res : list of dict

    Raises
    ------
    ValueError
        ``SkipForward`` without ``dzdy`` or without ``res``; a ``res`` of the wrong length; a
        ``BackPropDepth`` that is not a positive integer; malformed layers (see
        :func:`vl_simplenn_tidy`); errors of the blocks (tagged with the layer).
    TypeError
        Unknown options or values of the wrong type.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.simplenn import vl_simplenn
    >>> net = {'layers': [{'type': 'relu'}]}
    >>> x = np.asfortranarray(np.array([[-1.0, 2.0]]))
    >>> res = vl_simplenn(net, x, np.ones_like(x))
    >>> res[1]['x'], res[0]['dzdx']
    (array([[0., 2.]]), array([[0., 1.]]))
    """
    fname = "vl_simplenn"
    positional, args = _split_positional(args)
    opts = parse_options(fname, args, kwargs, _SIMPLENN_OPTIONS)
    for name, value in zip(("dzdy", "res"), positional):
        if opts[name] is not None:
            raise TypeError(f"{fname}: {name} is given both positionally and as an option")
        opts[name] = value
    dzdy, res = opts["dzdy"], opts["res"]
    conserve, accumulate, skip_forward = opts["conserve_memory"], opts["accumulate"], opts["skip_forward"]
    depth = limit(fname, "BackPropDepth", opts["back_prop_depth"])
    input_derivative = opts["input_derivative"]
    ctx = {"mode": "test" if opts["mode"] == "test" else "normal", "rng": opts["rng"], "der_input": True,
           "overwrite_input": False, "overwrite_der_output": False, "backward": False, "output_freed": False}

    # Structure only: the blocks check their options themselves (errors are tagged with the layer).
    layers = _tidy(net, fname, check_options=False)["layers"]
    n = len(layers)
    # Layers first_backprop .. n-1 are back-propagated (MatConvNet's backPropLim, 0-based).
    first_backprop = 0 if math.isinf(depth) else max(n - int(depth), 0)
    do_der = dzdy is not None and np.size(dzdy) > 0
    if skip_forward and not do_der:
        raise ValueError(f"{fname}: SkipForward needs a backward pass, but dzdy is empty")
    if res is None or (isinstance(res, (list, tuple)) and len(res) == 0):
        if skip_forward:
            raise ValueError(f"{fname}: SkipForward needs the res of an earlier call, but res is empty")
        res = _new_res(n)
    elif not isinstance(res, list) or len(res) != n + 1 or not all(isinstance(r, dict) for r in res):
        length = len(res) if isinstance(res, (list, tuple)) else type(res).__name__
        raise ValueError(f"{fname}: res must be a list of {n + 1} dicts (one per layer, plus the input), got {length}")

    if not skip_forward:
        res[0]["x"] = x
        frees_input = _inputs_freed_early(layers, conserve, do_der, first_backprop)
        owned = False  # res[i]['x'] is held by nothing but res (never so the caller's x)
        for i, layer in enumerate(layers):
            entry = LAYER_TYPES[layer["type"]]
            start = time.perf_counter()
            # Conserving memory, an input that no backward reads is freed: every input in a
            # forward-only pass, and those of frees_input.
            needed = do_der and i >= first_backprop and not frees_input[i]
            forget = conserve and not needed
            if i > 0:
                previous = layers[i - 1]
                forget = forget and not LAYER_TYPES[previous["type"]].loss and not previous["precious"]
            ctx["overwrite_input"] = forget and owned
            ctx["backward"] = do_der and i >= first_backprop
            ctx["output_freed"] = i + 1 < n and frees_input[i + 1]
            run_layer(fname, i, layer["name"], entry.forward, layer, res[i], res[i + 1], ctx)
            owned = _fresh(entry, res[i + 1]["x"], res[i]["x"], ctx["overwrite_input"])
            if forget:
                res[i]["x"] = None
            res[i]["time"] = time.perf_counter() - start
        ctx["overwrite_input"] = ctx["backward"] = ctx["output_freed"] = False

    if do_der:
        res[n]["dzdx"] = dzdy
        owned = False  # res[i + 1]['dzdx'] is held by nothing but res (never so dzdy)
        for i in range(n - 1, first_backprop - 1, -1):
            layer = layers[i]
            entry = LAYER_TYPES[layer["type"]]
            start = time.perf_counter()
            ctx["der_input"] = input_derivative or i != first_backprop
            drop = conserve and not layer["precious"] and i != n - 1
            ctx["overwrite_der_output"] = drop and owned
            dzdw = run_layer(fname, i, layer["name"], entry.backward, layer, res[i], res[i + 1], ctx)
            owned = _fresh(entry, res[i]["dzdx"], res[i + 1]["dzdx"], ctx["overwrite_der_output"])
            if dzdw is not None:
                res[i]["dzdw"] = _accumulated(res[i]["dzdw"], dzdw) if accumulate else list(dzdw)
            if drop:
                res[i + 1]["dzdx"] = None
                res[i + 1]["x"] = None
                res[i + 1]["aux"] = None
            res[i]["backward_time"] = time.perf_counter() - start
        ctx["overwrite_der_output"] = False
        if conserve and first_backprop > 0 and not layers[first_backprop]["precious"]:
            res[first_backprop]["dzdx"] = None
            res[first_backprop]["x"] = None
    return res


def _inputs_freed_early(layers, conserve, do_der, first_backprop):
    """For each layer, whether a call conserving memory frees its input right after its forward
    although it is back-propagated: its backward reads only its output, and the layer before it
    (back-propagated too, neither a loss nor precious) does not read that value as its own output,
    or keeps what it needs of it (``frees_output``, told by ``ctx['output_freed']``)."""
    frees = [False] * len(layers)
    if not (conserve and do_der):
        return frees
    for i in range(max(first_backprop, 0) + 1, len(layers)):
        entry, previous = LAYER_TYPES[layers[i]["type"]], LAYER_TYPES[layers[i - 1]["type"]]
        frees[i] = (entry.backward_from_output(layers[i])
                    and (not previous.backward_reads_output or previous.frees_output)
                    and not previous.loss and not layers[i - 1]["precious"])
    return frees


def _fresh(entry, result, read, overwrote):
    """Whether a layer's ``result`` is held by nothing but ``res``: its type declares
    ``fresh_results`` and the result is not the array it ``read``, unless it was allowed to write
    over that one (which ``res`` then frees)."""
    return entry.fresh_results and (overwrote or not np.may_share_memory(result, read))


def _accumulated(old, new):
    """``old + new`` per entry; a missing or None old entry counts as zero."""
    old = list(old or [])
    out = []
    for j, value in enumerate(new):
        previous = old[j] if j < len(old) else None
        out.append(value if previous is None or value is None else previous + value)
    return out


# ------------------------------------------------------------------------------------------------
# vl_simplenn_display
# ------------------------------------------------------------------------------------------------

_DISPLAY_OPTIONS = {
    "input_size": Option("any"),
    "batch_size": Option("any"),
    "max_num_columns": Option("int", 18),
}

_ROWS = [
    ("layer", "layer"), ("type", "type"), ("name", "name"), ("-", "-"),
    ("support", "support"), ("filtd", "filt dim"), ("filtdil", "filt dilat"), ("nfilt", "num filts"),
    ("stride", "stride"), ("pad", "pad"), ("-", "-"),
    ("rfsize", "rf size"), ("rfoffset", "rf offset"), ("rfstride", "rf stride"), ("-", "-"),
    ("dsize", "data size"), ("ddepth", "data depth"), ("dnum", "data num"), ("-", "-"),
    ("xmem", "data mem"), ("wmem", "param mem"),
]


def _pad4(value):
    flat = [float(v) for v in np.ravel(value)]
    return flat * 4 if len(flat) == 1 else flat[:4]


def _num(value):
    """MATLAB's %.4g (NaN prints as NaN)."""
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def _dims(values):
    if all(v == values[0] or (math.isnan(v) and math.isnan(values[0])) for v in values):
        return _num(values[0])
    return "x".join(_num(v) for v in values)


def _memory(num_bytes):
    if math.isnan(num_bytes):
        return "NaN"
    for power, unit in ((1, "B"), (2, "KB"), (3, "MB")):
        if num_bytes < 1024 ** power:
            return f"{num_bytes / 1024 ** (power - 1):.0f}{unit}"
    return f"{num_bytes / 1024 ** 3:.0f}GB"


def _ascii_table(rows):
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = ["-" * w if cell == "-" else cell.rjust(w) for cell, w in zip(row, widths)]
        lines.append("|".join(cells) + "|")
    return "\n".join(lines) + "\n"


def _input_size(meta, input_size, batch_size):
    size = [math.nan, math.nan, math.nan, 1.0]
    given = input_size
    if given is None and isinstance(meta, dict):
        given = meta.get("inputSize")
        if given is None and isinstance(meta.get("normalization"), dict):
            given = meta["normalization"].get("imageSize")
    if given is not None:
        values = [float(v) for v in np.ravel(given)]
        if len(values) > 4:
            raise ValueError(f"vl_simplenn_display: InputSize must have at most 4 elements, got {len(values)}")
        size[:len(values)] = values
    if batch_size is not None:
        size[3] = float(batch_size)
    return size


def vl_simplenn_display(net, *args, **kwargs):
    """Print MatConvNet's per-layer table of a SimpleNN network and return its statistics.

    ``info = vl_simplenn_display(net)``, ``vl_simplenn_display(net, 'inputSize', [32, 32, 3, 100])``,
    ``vl_simplenn_display(net, batch_size=100)``.

    The table has one column per layer (column 0 is the input) and the rows ``layer``, ``type``,
    ``name``; ``support``, ``filt dim``, ``filt dilat``, ``num filts``, ``stride``, ``pad``;
    ``rf size``, ``rf offset``, ``rf stride`` (receptive field of each layer's output on the
    input); ``data size``, ``data depth``, ``data num``; ``data mem``, ``param mem`` (4 bytes per
    element, as MatConvNet counts). It is split every ``MaxNumColumns`` columns and followed by the
    totals ``parameter memory`` and ``data memory``.

    Parameters
    ----------
    net : dict
        SimpleNN network (checked with :func:`vl_simplenn_tidy`).
    InputSize : from meta
        [H, W, C, N] (or a prefix). Default: ``meta['inputSize']``, else
        ``meta['normalization']['imageSize']``, else unknown (NaN) with N = 1.
    BatchSize : None
        Overrides N.
    MaxNumColumns : 18
        Layers per printed table.

    Returns
    -------
    info : dict
        ``support`` (2 x L), ``stride`` (2 x L), ``pad`` (4 x L), ``receptiveFieldSize``,
        ``receptiveFieldOffset``, ``receptiveFieldStride`` (2 x L), ``dataSize`` (4 x (L + 1)),
        float arrays with MatConvNet's field names; ``table`` (the rows as lists of strings, label
        first), ``parameterMemory`` and ``dataMemory`` (bytes), ``text`` (what was printed).

    Raises
    ------
    TypeError, ValueError
        For bad options or a malformed net.

    Examples
    --------
    >>> from cnnx.simplenn import vl_simplenn_display
    >>> info = vl_simplenn_display({'layers': [{'type': 'relu'}]}, input_size=[4, 4, 3])
    ... # doctest: +ELLIPSIS
    layer|    0|...
    >>> info['dataSize'][:, 1]
    array([4., 4., 3., 1.])
    """
    fname = "vl_simplenn_display"
    opts = parse_options(fname, args, kwargs, _DISPLAY_OPTIONS)
    if opts["max_num_columns"] < 1:
        raise ValueError(f"{fname}: MaxNumColumns must be at least 1")
    tidy = vl_simplenn_tidy(net)
    layers = tidy["layers"]
    n = len(layers)
    support = np.ones((2, n))
    stride = np.ones((2, n))
    pad = np.zeros((4, n))
    geometry = []
    for l, layer in enumerate(layers):
        entry = LAYER_TYPES[layer["type"]]
        geo = entry.geometry(layer) if entry.geometry is not None else {}
        geometry.append(geo)
        support[:, l] = geo.get("support", [1, 1])
        if "stride" in layer:
            stride[:, l] = _pair(layer["stride"])
        if "pad" in layer:
            pad[:, l] = _pad4(layer["pad"])
    # Stride of each layer's input grid on the image: product of the strides before it.
    input_stride = np.cumprod(np.hstack([np.ones((2, 1)), stride[:, :-1]]), axis=1) if n else np.ones((2, 0))
    rf_size = 1 + np.cumsum(input_stride * (support - 1), axis=1)
    rf_offset = 1 + np.cumsum(input_stride * ((support - 1) / 2 - pad[[0, 2], :]), axis=1)
    rf_stride = np.cumprod(stride, axis=1)

    data = np.zeros((4, n + 1))
    data[:, 0] = _input_size(tidy["meta"], opts["input_size"], opts["batch_size"])
    for l, layer in enumerate(layers):
        entry = LAYER_TYPES[layer["type"]]
        d = data[:, l]
        known = [int(v) if math.isfinite(v) else 0 for v in d[:2]]
        spatial = window_output_size(*known, support[:, l].astype(int), pad[:, l].astype(int), stride[:, l].astype(int))
        out = [float(y) if math.isfinite(v) else math.nan for v, y in zip(d[:2], spatial)] + [d[2], d[3]]
        if entry.data_size is not None:
            out = entry.data_size(layer, list(d), out)
        if entry.loss:
            out[2:] = [1.0, 1.0]
        data[:, l + 1] = out

    param_bytes = [4.0 * sum(np.size(w) for w in layer["weights"] if w is not None) for layer in layers]
    data_bytes = [4.0 * float(np.prod(data[:, l])) for l in range(n + 1)]

    def cell(key, l):
        if key == "-":
            return "-"
        if key == "layer":
            return str(l)
        if key == "dsize":
            return _dims(list(data[:2, l]))
        if key in ("ddepth", "dnum"):
            return _num(data[2 if key == "ddepth" else 3, l])
        if key == "xmem":
            return _memory(data_bytes[l])
        if l == 0:
            return "input" if key == "type" else "n/a"
        layer, geo, k = layers[l - 1], geometry[l - 1], l - 1
        entry = LAYER_TYPES[layer["type"]]
        if key == "type":
            abbreviation = entry.abbreviation
            return abbreviation(layer) if callable(abbreviation) else abbreviation
        if key == "name":
            return layer["name"]
        if key in ("nfilt", "filtd", "filtdil"):
            value = geo.get({"nfilt": "num_filters", "filtd": "filter_depth", "filtdil": "dilate"}[key])
            return "n/a" if value is None else _dims([float(v) for v in np.ravel(value)])
        if key == "wmem":
            return _memory(param_bytes[k])
        columns = {"support": support, "stride": stride, "pad": pad, "rfsize": rf_size,
                   "rfoffset": rf_offset, "rfstride": rf_stride}
        return _dims(list(columns[key][:, k]))

    table = [[label] + [cell(key, l) for l in range(n + 1)] for key, label in _ROWS]
    step = opts["max_num_columns"]
    text = ""
    for first in range(1, n + 2, step):
        text += _ascii_table([[row[0]] + row[first:first + step] for row in table]) + "\n"
    total_params = sum(param_bytes)
    total_data = sum(data_bytes)
    totals = [["parameter memory", f"{_memory(total_params)} ({total_params / 4:.2g} parameters)"],
              ["data memory", f"{_memory(total_data)} (for batch size {_num(data[3, 0])})"]]
    text += _ascii_table(totals)
    sys.stdout.write(text)
    return {
        "support": support, "stride": stride, "pad": pad,
        "receptiveFieldSize": rf_size, "receptiveFieldOffset": rf_offset,
        "receptiveFieldStride": rf_stride, "dataSize": data,
        "table": table, "parameterMemory": total_params, "dataMemory": total_data, "text": text,
    }
