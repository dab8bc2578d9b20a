"""MatConvNet model files: read and write SimpleNN and DagNN networks as MATLAB ``.mat`` files.

The files are MatConvNet's own layout, so models move between MATLAB and cnnx both ways:

- SimpleNN: a struct with a ``layers`` cell array of layer structs and a ``meta`` struct, stored
  either as the variable ``net`` (``cnn_train``'s checkpoints) or spread over top-level variables
  (``save(file, '-struct', 'net')``, the pretrained-model files);
- DagNN: the struct of ``dagnn.DagNN.saveobj`` (``vars``, ``params``, ``layers``, ``meta``), turned
  into a :class:`cnnx.dagnn.DagNN` by its ``loadobj``.

MATLAB values become Python ones: char arrays -> str, cell arrays -> list, 1x1 structs -> dict,
struct arrays -> list of dicts, 1x1 numbers -> int/float/bool (other classes: NumPy scalars),
vectors -> 1-D arrays, ``[]`` -> None. Layer fields are converted by what they mean: weights keep
their stored arrays with the trailing singleton dimensions MATLAB drops put back (a bank of one
filter comes back FH x FW x FC x 1; biases stay 1 x K), ``pad``/``stride``/``pool``/... become ints
or lists of ints, ``learningRate``/``weightDecay`` 1-D float arrays, ``precious`` a bool.

A field that is not what it must be (``pad = 1.5``, NaN where a whole number belongs, a number
where a string belongs, weights that are not single or double, complex numbers) is a ValueError
naming the file, the layer (``layers[2] ('conv2')``, 0-based), the field, what was expected and
what was found: nothing is rounded, cast or dropped on the way.
"""
import hashlib
import os
import re
import warnings
from io import BytesIO

import numpy as np
import scipy.io
from scipy.io.matlab import MatlabFunction, MatlabObject, MatlabOpaque, mat_struct, matfile_version

from ._files import atomic_open
from ._matv73 import h5py_or_error
from ._matv73 import read_variables as read_v73_variables
from .layers.base import layer_label
from .layers.registry import BLOCK_TYPES, LAYER_TYPES
from .simplenn import vl_simplenn_tidy

__all__ = ["load_matconvnet", "save_matconvnet", "verify_matconvnet"]

# What a layer field means, for converting it (and saying what was expected when it cannot be).
# The fields every layer has, whatever its type (vl_simplenn_tidy's, and MatConvNet's legacy conv
# layout, which tidy turns into 'weights' for any type):
_GENERIC_FIELDS = {"name": "string", "type": "string", "precious": "bool", "learningRate": "vector",
                   "weightDecay": "vector", "weights": "weights", "filters": "weight", "biases": "weight"}
# A layer type's own fields are those it declares in register_layer_type's options=, read by the
# kind of their cnnx._options.Option: (how the file holds it, the counts of whole numbers allowed
# and their layout). Other fields are read as MATLAB stores them.
_OPTION_FIELDS = {
    "pad4": ("ints", (1, 4), " [TOP BOTTOM LEFT RIGHT]"), "pair": ("ints", (1, 2), " [Y X]"),
    "pair0": ("ints", (1, 2), " [Y X]"), "int": ("ints", (1,), ""), "float": ("float",),
    "flag": ("bool",), "bool": ("bool",), "choice": ("string",),
}


def _field_kind(entry, field):
    """How the file holds ``field`` of a layer of type ``entry``: (kind, ...) or None for as stored."""
    if field in _GENERIC_FIELDS:
        return (_GENERIC_FIELDS[field],)
    option = entry.options.get(field) if entry is not None else None
    return _OPTION_FIELDS.get(option.kind) if option is not None else None


_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}\Z")

_ComplexWarning = np.exceptions.ComplexWarning if hasattr(np, "exceptions") else np.ComplexWarning


# ------------------------------------------------------------------------------------------------
# MATLAB -> Python
# ------------------------------------------------------------------------------------------------


class _Malformed(ValueError):
    """A part of the file is not what it must be; load_matconvnet adds its name and the file's."""


def _is_struct_array(value):
    return isinstance(value, np.ndarray) and value.dtype == object and value.size > 0 and all(
        isinstance(v, mat_struct) for v in value.flat)


def _struct_fields(value, where):
    """The fields of a 1x1 struct (raw MATLAB values), or _Malformed saying what was found."""
    if _is_struct_array(value) and value.size == 1:
        value = value.flat[0]
    if not isinstance(value, mat_struct):
        raise _Malformed(f"{where} must be a 1x1 struct, got {_describe(value)}")
    return {name: getattr(value, name) for name in value._fieldnames}


def _describe(value):
    if isinstance(value, mat_struct):
        return "a struct"
    if isinstance(value, (MatlabFunction, MatlabOpaque, MatlabObject)):
        return "a MATLAB object or function handle"
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            return f"the string {_from_matlab(value, '')!r}"
        shape = "x".join(str(d) for d in value.shape)
        if _is_struct_array(value):
            return f"a {shape} struct array"
        kind = {"O": "cell", "b": "logical"}.get(value.dtype.kind, str(value.dtype))
        return f"a {shape} {kind} array"
    return type(value).__name__


def _number_text(number):
    number = float(number)
    return str(int(number)) if number.is_integer() else repr(number)


def _got(value):
    """A raw MATLAB value as an error message shows it: real numbers plainly (1.5, nan, [1, 1, 1])."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        if value.size == 0:
            return "[]"
        if value.size <= 8 and value.ndim <= 2 and 1 in value.shape:
            numbers = [_number_text(v) for v in value.ravel(order="F")]
            return numbers[0] if len(numbers) == 1 else "[" + ", ".join(numbers) + "]"
    return _describe(value)


def _real_numbers(value):
    """The elements of a real numeric MATLAB value as a 1-D float64 array; None for anything else
    (strings, cells, structs, logicals, complex numbers, [])."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.size > 0:
        return value.ravel(order="F").astype(np.float64)
    return None


def _from_matlab(value, where):
    """Convert a raw loadmat value (mat_dtype, struct_as_record=False, no squeezing) to Python."""
    if isinstance(value, mat_struct):
        return {name: _from_matlab(getattr(value, name), f"{where}.{name}") for name in value._fieldnames}
    if isinstance(value, (MatlabFunction, MatlabOpaque, MatlabObject)):
        raise _Malformed(f"{where} is a MATLAB object or function handle, which cnnx cannot read")
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "U":
        strings = [str(s) for s in value.ravel(order="F")]
        return "" if not strings else strings[0] if len(strings) == 1 else strings
    if value.dtype == object:
        if _is_struct_array(value):
            if value.size == 1:
                return _from_matlab(value.flat[0], where)
            return [_from_matlab(v, f"{where}[{k}]") for k, v in enumerate(value.ravel(order="F"))]
        return [_from_matlab(v, f"{where}[{k}]") for k, v in enumerate(value.ravel(order="F"))]
    if value.dtype.kind == "c":
        raise _Malformed(f"{where} must be real numbers (cnnx does not read complex numbers), "
                         f"got {_describe(value)}")
    if value.size == 0:
        return None
    if value.size == 1 and value.ndim <= 2:
        scalar = value.reshape(())[()]
        if value.dtype == np.bool_:
            return bool(scalar)
        if value.dtype == np.float64:
            return float(scalar)
        if value.dtype == np.int64:
            return int(scalar)
        return scalar
    if value.ndim == 2 and 1 in value.shape:
        return value.ravel(order="F")
    return value


def _weight_array(value, where):
    """A stored weight kept exactly as stored (MATLAB's 2-D or more), or None for []."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc" and value.size == 0:
        return None
    if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float64):
        raise _Malformed(f"{where} must be a float32 or float64 array (MATLAB single or double), "
                         f"got {_describe(value)}")
    return value


def _with_ndim(array, ndim):
    # MATLAB drops trailing singleton dimensions; putting them back does not move any element.
    if array is None or not ndim or array.ndim >= ndim:
        return array
    return array.reshape(array.shape + (1,) * (ndim - array.ndim), order="F")


def _layer_field(field, value, label, entry):
    """Convert one field of a SimpleNN layer of type ``entry`` by what it means; ``label`` names the layer."""
    where = f"{label}: {field}"
    kind = _field_kind(entry, field)
    kind, details = (kind[0], kind[1:]) if kind else (None, ())
    if kind == "weights":
        if not (isinstance(value, np.ndarray) and value.dtype == object and not _is_struct_array(value)):
            raise _Malformed(f"{where} must be a cell array of arrays, got {_describe(value)}")
        return [_weight_array(w, f"{where}[{k}]") for k, w in enumerate(value.ravel(order="F"))]
    if kind == "weight":
        return _weight_array(value, where)
    if kind == "string":
        if not (isinstance(value, np.ndarray) and value.dtype.kind == "U"):
            raise _Malformed(f"{where} must be a string, got {_got(value)}")
        return _from_matlab(value, where)
    numbers = _real_numbers(value)
    if kind == "ints":
        counts, layout = details
        many = " or ".join(str(n) for n in counts)
        expected = ("a whole number" if counts == (1,) else f"{many} whole numbers") + layout
        if (numbers is None or numbers.size not in counts or not np.all(np.isfinite(numbers))
                or np.any(numbers != np.trunc(numbers))):
            raise _Malformed(f"{where} must be {expected}, got {_got(value)}")
        ints = [int(v) for v in numbers]
        return ints[0] if len(ints) == 1 else ints
    if kind == "float":
        if numbers is None or numbers.size != 1 or not np.isfinite(numbers[0]):
            raise _Malformed(f"{where} must be a finite number, got {_got(value)}")
        return float(numbers[0])
    if kind == "bool":
        flag = value.ravel()[0] if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" \
            and value.size == 1 else None
        if flag is None or flag not in (0, 1):
            raise _Malformed(f"{where} must be true or false (a logical, 0 or 1), got {_got(value)}")
        return bool(flag)
    if kind == "vector":
        if numbers is None or not np.all(np.isfinite(numbers)):
            raise _Malformed(f"{where} must be finite numbers, got {_got(value)}")
        return numbers
    converted = _from_matlab(value, where)
    if converted is None:
        return [] if field == "opts" else None
    return converted


def _entry_name(fields, what, index):
    """The name of a layer, parameter or variable (a string), or _Malformed."""
    if "name" not in fields:
        return None
    raw = fields["name"]
    if not (isinstance(raw, np.ndarray) and raw.dtype.kind == "U"):
        raise _Malformed(f"{what}[{index}]: name must be a string, got {_got(raw)}")
    return _from_matlab(raw, "name")


def _simplenn_layer(raw, index):
    fields = _struct_fields(raw, f"layers[{index}]")
    label = layer_label("layers", index, _entry_name(fields, "layers", index))
    layer_type = _layer_field("type", fields["type"], label, None) if "type" in fields else None
    entry = LAYER_TYPES.get(layer_type)
    if entry is not None and entry.holds_functions:
        raise _Malformed(f"{label} is a {layer_type} layer; its MATLAB functions cannot run in cnnx (build the layer "
                         "in Python instead)")
    if entry is None:
        known = ", ".join(sorted(LAYER_TYPES))
        raise _Malformed(f"{label} has type '{layer_type}', which cnnx does not implement (it implements: {known})")
    layer = {field: _layer_field(field, value, label, entry) for field, value in fields.items()}
    if "weights" in layer:
        layer["weights"] = [_with_ndim(w, entry.weight_ndims[k] if k < len(entry.weight_ndims) else 0)
                            for k, w in enumerate(layer["weights"])]
    if "filters" in layer and entry.weight_ndims:
        layer["filters"] = _with_ndim(layer["filters"], entry.weight_ndims[0])
    return layer


def _simplenn_from_matlab(fields):
    layers = fields["layers"]
    if not (isinstance(layers, np.ndarray) and layers.dtype == object and not _is_struct_array(layers)):
        raise _Malformed(f"a SimpleNN network's 'layers' must be a cell array of structs, got {_describe(layers)}")
    net = {"layers": [_simplenn_layer(raw, k) for k, raw in enumerate(layers.ravel(order="F"))]}
    for name, value in fields.items():
        if name != "layers":
            net[name] = _from_matlab(value, name)
    if net.get("meta") is None:
        net["meta"] = {}
    try:
        vl_simplenn_tidy(net)
    except (TypeError, ValueError) as error:
        raise _Malformed(str(error).removeprefix("vl_simplenn_tidy: ")) from None
    return net


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _struct_list(value, where):
    if isinstance(value, np.ndarray) and value.size == 0:
        return []
    if not _is_struct_array(value):
        raise _Malformed(f"{where} must be a struct array, got {_describe(value)}")
    return [_struct_fields(v, f"{where}[{k}]") for k, v in enumerate(value.ravel(order="F"))]


def _dagnn_from_matlab(fields):
    s = {"vars": [], "params": [], "layers": []}
    for what in ("vars", "params", "layers"):
        for k, raw in enumerate(_struct_list(fields[what], what)):
            label = layer_label(what, k, _entry_name(raw, what, k))
            entry = {name: _from_matlab(v, f"{label}: {name}") for name, v in raw.items() if name != "value"}
            if what == "params" and "value" in raw:
                entry["value"] = _weight_array(raw["value"], f"{label}: value")
            if what == "layers":
                for name in ("inputs", "outputs", "params"):
                    if name in entry:
                        entry[name] = _as_list(entry[name])
            s[what].append(entry)
    by_name = {param.get("name"): param for param in s["params"]}
    for layer in s["layers"]:
        block = BLOCK_TYPES.get(layer.get("type"))
        for name, ndim in zip(layer.get("params") or [], block.param_ndims if block is not None else ()):
            param = by_name.get(name)
            if param is not None and "value" in param:
                param["value"] = _with_ndim(param["value"], ndim)
    s["meta"] = _from_matlab(fields["meta"], "meta") if "meta" in fields else {}
    if s["meta"] is None:
        s["meta"] = {}
    from .dagnn import DagNN  # imported here: the DagNN module is only needed for DagNN files

    try:
        return DagNN.loadobj(s)
    except (TypeError, ValueError) as error:
        raise _Malformed(str(error).removeprefix("DagNN.loadobj: ")) from None


def _loadmat(path, mat_dtype):
    return scipy.io.loadmat(path, mat_dtype=mat_dtype, struct_as_record=False, squeeze_me=False,
                            chars_as_strings=True)


def _read_variables(path):
    """The file's variables as loadmat gives them with ``mat_dtype`` (MATLAB's classes), except that
    complex arrays stay complex (loadmat's ``mat_dtype`` would drop their imaginary parts, with only
    a warning): those come from a second read without ``mat_dtype``, so that converting them fails
    and names where they are."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", _ComplexWarning)
            return _loadmat(path, True)
    except _ComplexWarning:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _ComplexWarning)
        variables = _loadmat(path, True)
    as_stored = _loadmat(path, False)
    return {name: _keep_complex(value, as_stored.get(name)) for name, value in variables.items()}


def _keep_complex(value, stored):
    """``value`` with the complex arrays of ``stored`` (the same value read without mat_dtype) put back."""
    if isinstance(stored, np.ndarray) and stored.dtype.kind == "c":
        single = isinstance(value, np.ndarray) and value.dtype == np.float32
        return stored.astype(np.complex64 if single else np.complex128)
    if isinstance(value, mat_struct) and isinstance(stored, mat_struct):
        for name in value._fieldnames:
            setattr(value, name, _keep_complex(getattr(value, name), getattr(stored, name, None)))
    elif (isinstance(value, np.ndarray) and value.dtype == object and isinstance(stored, np.ndarray)
          and stored.dtype == object and stored.shape == value.shape):
        for index in np.ndindex(value.shape):
            value[index] = _keep_complex(value[index], stored[index])
    return value


def load_matconvnet(path, with_extra=False):
    """Load a MatConvNet network (SimpleNN or DagNN) from a ``.mat`` file.

    ``net = load_matconvnet(path)``; ``net, extras = load_matconvnet(path, with_extra=True)``.

    Parameters
    ----------
    path : str or os.PathLike
        A MATLAB ``.mat`` file holding either a variable ``net`` (a SimpleNN struct with a
        ``layers`` cell array, or a DagNN ``saveobj`` struct with ``vars``, ``params``, ``layers``)
        or those fields as top-level variables (``save(file, '-struct', 'net')``). Versions 5 and 7
        are read by SciPy; version 7.3 (HDF5, MATLAB's ``-v7.3`` and its default for variables over
        2 GB) through h5py, the optional ``hdf5`` extra.
    with_extra : bool, default False
        Also return the other top-level variables of a file with a ``net`` variable (for example
        ``cnn_train``'s ``state`` and ``stats``), converted to Python values.

    Returns
    -------
    net : dict or cnnx.dagnn.DagNN
        A SimpleNN dict ``{'layers': [...], 'meta': {...}}`` (as stored, checked with
        :func:`cnnx.vl_simplenn_tidy`), or the DagNN built by ``DagNN.loadobj``.
    extras : dict
        Only with ``with_extra``: variable name -> value.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImportError
        If the file is MATLAB v7.3 (HDF5) and h5py, the ``hdf5`` extra (``pip install 'cnnx[hdf5]'``),
        is not installed.
    ValueError
        If the file is not a ``.mat`` file, holds no network, or holds a layer cnnx does not
        implement; the message says what was found. Also if the file was written by
        :func:`save_matconvnet` and its bytes no longer match the checksum stored in it (see
        :func:`verify_matconvnet`). Also for a field that is not what it must be (``pad = 1.5``,
        a string for a number, weights that are not single or double, complex numbers anywhere
        it reads): the message names the file, the layer (its 0-based index and name), the field,
        what was expected and what was found, e.g. ``load_matconvnet: net.mat: layers[2] ('conv2'):
        pad must be 1 or 4 whole numbers [TOP BOTTOM LEFT RIGHT], got 1.5``.

    Examples
    --------
    >>> import os, tempfile
    >>> from cnnx.io import load_matconvnet, save_matconvnet
    >>> path = os.path.join(tempfile.mkdtemp(), 'net.mat')
    >>> save_matconvnet({'layers': [{'type': 'relu'}], 'meta': {}}, path)
    >>> load_matconvnet(path)['layers'][0]['type']
    'relu'
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_matconvnet: no such file: {path}")
    try:
        major, _ = matfile_version(path)
    except Exception as error:  # scipy raises several types for files that are not .mat files
        raise ValueError(f"load_matconvnet: {path} is not a MATLAB .mat file ({error})") from None
    if major == 2:
        h5py_or_error(path)
    else:
        verify_matconvnet(path)
    try:
        variables = read_v73_variables(path) if major == 2 else _read_variables(path)
    except Exception as error:
        raise ValueError(f"load_matconvnet: cannot read {path} as a .mat file ({error})") from None
    variables = {k: v for k, v in variables.items() if not k.startswith("__") and k != "cnnx_sha256"}
    try:
        return _network_from_matlab(variables, path, with_extra)
    except _Malformed as error:
        raise ValueError(f"load_matconvnet: {path}: {error}") from None


def _network_from_matlab(variables, path, with_extra):
    if "net" in variables:
        fields = _struct_fields(variables.pop("net"), "the variable 'net'")
        extra_raw, found = variables, "the variable 'net' has fields"
    else:
        fields, extra_raw, found = variables, {}, "found variables"
    if "vars" in fields and "params" in fields and "layers" in fields:
        net = _dagnn_from_matlab(fields)
    elif "layers" in fields:
        net = _simplenn_from_matlab(fields)
    else:
        names = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"load_matconvnet: {path} holds no MatConvNet network: expected 'layers' (SimpleNN) "
                         f"or 'vars', 'params' and 'layers' (DagNN); {found}: {names}")
    if not with_extra:
        return net
    return net, {name: _from_matlab(value, name) for name, value in extra_raw.items()}


# ------------------------------------------------------------------------------------------------
# Python -> MATLAB
# ------------------------------------------------------------------------------------------------


def _empty_cell():
    return np.empty((0, 0), dtype=object)


def _cell(items):
    cell = np.empty((1, len(items)), dtype=object)
    for k, item in enumerate(items):
        cell[0, k] = item
    return cell


def _to_matlab(value, where, int_class):
    """Convert a Python value for scipy.io.savemat. ``int_class`` is the MATLAB class of Python ints."""
    if value is None:
        return np.zeros((0, 0))
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, int):
        return int_class(value)
    if isinstance(value, (float, str, np.number)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            converted = np.empty(value.shape, dtype=object)
            for index, item in np.ndenumerate(value):
                converted[index] = _to_matlab(item, f"{where}{list(index)}", int_class)
            return converted
        if value.dtype.kind not in "biufcU":
            raise TypeError(f"save_matconvnet: {where} is a {value.dtype} array, which a .mat file cannot hold")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not _IDENTIFIER.match(key):
                raise ValueError(f"save_matconvnet: {where} has the key {key!r}, which is not a MATLAB field name")
            out[key] = _to_matlab(item, f"{where}[{key!r}]", int_class)
        return out
    if isinstance(value, (list, tuple)):
        numbers = [v for v in value if isinstance(v, (int, float, np.integer, np.floating))
                   and not isinstance(v, (bool, np.bool_))]
        if value and len(numbers) == len(value):
            if all(isinstance(v, int) for v in value) and int_class is np.int64:
                return np.array([value], dtype=np.int64)
            return np.array([value], dtype=np.float64)
        if not value:
            return _empty_cell()
        return _cell([_to_matlab(v, f"{where}[{k}]", int_class) for k, v in enumerate(value)])
    if callable(value):
        raise TypeError(f"save_matconvnet: {where} is a Python function, which a .mat file cannot hold "
                        "(custom layers cannot be saved)")
    raise TypeError(f"save_matconvnet: {where} is a {type(value).__name__}, which a .mat file cannot hold")


def _struct_array(items, where):
    """A 1xN MATLAB struct array from a list of dicts with the same keys."""
    names = list(items[0]) if items else ["name"]
    for k, item in enumerate(items):
        if list(item) != names:
            raise ValueError(f"save_matconvnet: {where}[{k}] has fields {list(item)}, but {where}[0] has {names}")
    array = np.empty((1, len(items)), dtype=[(name, object) for name in names])
    for k, item in enumerate(items):
        converted = _to_matlab(item, f"{where}[{k}]", float)
        array[0, k] = tuple(converted[name] for name in names)
    return array


def _simplenn_to_matlab(net):
    try:
        vl_simplenn_tidy(net)
    except (TypeError, ValueError) as error:
        raise ValueError(f"save_matconvnet: {error}") from None
    for k, layer in enumerate(net["layers"]):
        if LAYER_TYPES[layer["type"]].holds_functions:
            raise TypeError(f"save_matconvnet: net['layers'][{k}] is a {layer['type']} layer; its Python functions "
                            "cannot be stored in a .mat file")
    content = {key: _to_matlab(value, f"net[{key!r}]", float) for key, value in net.items() if key != "layers"}
    content["layers"] = _cell([_to_matlab(layer, f"net['layers'][{k}]", float)
                               for k, layer in enumerate(net["layers"])])
    content.setdefault("meta", {})
    return content


def _dagnn_to_matlab(s):
    content = {}
    for key, value in s.items():
        if key in ("vars", "params", "layers"):
            content[key] = _struct_array(list(value), f"net.saveobj()[{key!r}]")
        else:
            content[key] = _to_matlab(value, f"net.saveobj()[{key!r}]", float)
    return content


def save_matconvnet(net, path, **extra):
    """Save a network to a ``.mat`` file in MatConvNet's layout, atomically.

    ``save_matconvnet(net, path)``; ``save_matconvnet(net, path, state=state, stats=stats)``.

    The network is stored as the variable ``net`` (as ``cnn_train`` does): a SimpleNN dict as a
    struct with a ``layers`` cell array, a DagNN as the struct of its ``saveobj()``. Python numbers
    in the network become MATLAB doubles (as MatConvNet's options are), bools logicals, strings char
    arrays, lists of numbers double row vectors, other lists cell arrays, dicts structs, None ``[]``.
    Each keyword becomes one more top-level variable; there Python ints are stored as int64 so that
    they come back as ints. The file is written to a temporary file in the same folder, then
    renamed over ``path``, so a crash never leaves a half-written file.

    Every file carries its own SHA-256 checksum, which :func:`load_matconvnet` verifies: the
    header's descriptive text says the file was written by cnnx, and the last variable,
    ``cnnx_sha256``, is the hex SHA-256 of all bytes before it. MATLAB reads the file as usual (the
    checksum is one more char variable; MatConvNet's ``cnn_train`` loads only ``net``, ``state`` and
    ``stats``).

    Parameters
    ----------
    net : dict or cnnx.dagnn.DagNN
        SimpleNN network (checked with :func:`cnnx.vl_simplenn_tidy`; custom layers cannot be
        saved) or an object with a ``saveobj()`` method.
    path : str or os.PathLike
        Output file.
    **extra
        Additional variables (names must be MATLAB identifiers).

    Raises
    ------
    TypeError
        For a value a ``.mat`` file cannot hold (functions, custom layers, objects).
    ValueError
        For a malformed network or a name that is not a MATLAB identifier.
    OSError
        If the file cannot be written (a full disk, no permission): the message names ``path``;
        an existing file at ``path`` is left as it was.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from cnnx.io import load_matconvnet, save_matconvnet
    >>> net = {'layers': [{'type': 'conv', 'weights': [np.ones((3, 3, 1, 2), np.float32),
    ...                                                np.zeros((1, 2), np.float32)]}]}
    >>> path = os.path.join(tempfile.mkdtemp(), 'net.mat')
    >>> save_matconvnet(net, path, state={'epoch': 3})
    >>> net2, extras = load_matconvnet(path, with_extra=True)
    >>> net2['layers'][0]['weights'][0].shape, extras['state']['epoch']
    ((3, 3, 1, 2), 3)
    """
    path = os.fspath(path)
    if isinstance(net, dict):
        content = _simplenn_to_matlab(net)
    elif callable(getattr(net, "saveobj", None)):
        content = _dagnn_to_matlab(net.saveobj())
    else:
        raise TypeError(f"save_matconvnet: net must be a SimpleNN dict or a DagNN, got {type(net).__name__}")
    variables = {"net": content}
    for name, value in extra.items():
        if not _IDENTIFIER.match(name):
            raise ValueError(f"save_matconvnet: {name!r} is not a MATLAB variable name")
        if name == "cnnx_sha256":
            raise ValueError(f"save_matconvnet: the variable name {name!r} is cnnx's own; use another")
        variables[name] = _to_matlab(value, name, np.int64)

    with atomic_open(path, "w+b", "save_matconvnet", "the model file") as stream:
        scipy.io.savemat(stream, variables, format="5", long_field_names=True, oned_as="row")
        _seal(stream)


# ------------------------------------------------------------------------------------------------
# Integrity: a SHA-256 of the file inside the file, where MATLAB and MatConvNet ignore it
# ------------------------------------------------------------------------------------------------

# Replaces scipy's header text (MATLAB only reads the last 12 of the header's 128 bytes).
_SEALED_HEADER = (b"MATLAB 5.0 MAT-file, written by cnnx: its last variable, cnnx_sha256, is the SHA-256 "
                  b"of all bytes before it").ljust(116)
_CHUNK = 1 << 20


def _digest_element_prefix():
    """The bytes of the MAT v5 data element ``cnnx_sha256 = '<64 hex digits>'`` before its digits."""
    stream = BytesIO()
    scipy.io.savemat(stream, {"cnnx_sha256": "0" * 64}, format="5")
    element = stream.getvalue()[128:]  # without its own file header
    assert element.endswith(b"0" * 64)  # 64 one-byte chars end the element: no padding after them
    return element[:-64]


_DIGEST_PREFIX = _digest_element_prefix()
_DIGEST_SIZE = len(_DIGEST_PREFIX) + 64


def _digest_variable(hexdigest):
    """The MAT v5 data element of the variable ``cnnx_sha256 = hexdigest`` (a char row)."""
    return _DIGEST_PREFIX + hexdigest.encode("ascii")


def _sha256(stream, size):
    """SHA-256 of the first ``size`` bytes of a binary file, read in chunks."""
    digest = hashlib.sha256()
    stream.seek(0)
    while size > 0:
        chunk = stream.read(min(_CHUNK, size))
        if not chunk:
            break
        digest.update(chunk)
        size -= len(chunk)
    return digest.hexdigest()


def _seal(stream):
    """Mark a just-written MAT file as cnnx's and append the SHA-256 of its bytes as a last variable."""
    stream.seek(0)
    stream.write(_SEALED_HEADER)
    size = stream.seek(0, os.SEEK_END)
    digest = _sha256(stream, size)
    stream.seek(0, os.SEEK_END)
    stream.write(_digest_variable(digest))


def verify_matconvnet(path):
    """Check the SHA-256 that :func:`save_matconvnet` stores in every file it writes.

    Returns True for an intact cnnx file, False for a file cnnx did not write (MATLAB's own,
    or cnnx's before it stored checksums), which cannot be checked. Raises ValueError, naming
    the file, when a cnnx file's bytes no longer match its checksum (damaged or truncated).

    Examples
    --------
    >>> import os, tempfile
    >>> from cnnx.io import save_matconvnet, verify_matconvnet
    >>> path = os.path.join(tempfile.mkdtemp(), 'net.mat')
    >>> save_matconvnet({'layers': [{'type': 'relu'}], 'meta': {}}, path)
    >>> verify_matconvnet(path)
    True
    """
    path = os.fspath(path)
    with open(path, "rb") as stream:
        if stream.read(len(_SEALED_HEADER)) != _SEALED_HEADER:
            return False
        size = stream.seek(0, os.SEEK_END)
        if size >= 128 + _DIGEST_SIZE:
            digest = _sha256(stream, size - _DIGEST_SIZE)
            stream.seek(size - _DIGEST_SIZE)
            if stream.read() == _digest_variable(digest):
                return True
    raise ValueError(f"load_matconvnet: {path} is damaged: its bytes do not match the SHA-256 checksum "
                     "cnnx stored in it when it wrote the file (changed or truncated since)")
