"""Read MATLAB v7.3 ``.mat`` files (HDF5 inside) into the values ``scipy.io.loadmat`` gives for v5 files.

MATLAB writes a v7.3 file as an HDF5 file behind a 512-byte header. Each variable is a dataset or a
group whose attribute ``MATLAB_class`` says what it is; arrays are stored with their dimensions
reversed (HDF5 is row-major, MATLAB column-major); ``char`` arrays are UTF-16 code units; a
``logical`` is ``uint8``; an empty array stores its dimensions as its data (attribute
``MATLAB_empty``); a cell array is a dataset of object references to its elements (kept in the
group ``#refs#``); a 1x1 struct is a group with one member per field (their order in
``MATLAB_fields``); a struct array is a group whose fields are datasets of references, one per
element; complex numbers are a compound type with ``real`` and ``imag``; a sparse matrix is a group
(attribute ``MATLAB_sparse``: its number of rows) of ``data``, ``ir`` and ``jc``.

:func:`read_variables` returns what ``scipy.io.loadmat(path, mat_dtype=True, struct_as_record=False,
squeeze_me=False, chars_as_strings=True)`` returns for the same variables saved as v5, so
:mod:`cnnx.io` reads both formats with one code path. Values of classes a network never holds
(function handles, MATLAB objects) come back as ``scipy.io.matlab.MatlabFunction`` or
``MatlabOpaque`` placeholders, as loadmat's own, so that cnnx's field checks name where they are.

h5py is an optional dependency (the ``hdf5`` extra); :func:`h5py_or_error` imports it.

Examples
--------
>>> from cnnx._matv73 import h5py_or_error
>>> h5py_or_error('net.mat').__name__
'h5py'
"""
import numpy as np
import scipy.sparse
from scipy.io.matlab import MatlabFunction, MatlabOpaque, mat_struct

__all__ = ["h5py_or_error", "read_variables"]

# MATLAB's numeric classes -> NumPy dtypes (as loadmat's mat_dtype gives them).
_NUMERIC = {"double": np.float64, "single": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
            "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64}


def h5py_or_error(path):
    """Import h5py, or raise ImportError saying how to install it to read ``path``.

    Examples
    --------
    >>> h5py_or_error('net.mat').__name__
    'h5py'
    """
    try:
        import h5py
    except ImportError:
        raise ImportError(f"load_matconvnet: {path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: "
                          "pip install 'cnnx[hdf5]' (or pip install h5py)") from None
    return h5py


def read_variables(path):
    """The variables of the v7.3 file ``path``: name -> value, as loadmat gives them for a v5 file.

    Parameters
    ----------
    path : str
        A MATLAB v7.3 ``.mat`` file.

    Returns
    -------
    dict
        Numeric arrays in MATLAB's shape (at least 2-D) and class, logicals as bool, strings as
        loadmat's 1-element unicode arrays (one string per row), cells as object arrays, structs
        as object arrays of ``mat_struct``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, h5py
    >>> path = os.path.join(tempfile.mkdtemp(), 'v73.mat')
    >>> with h5py.File(path, 'w', userblock_size=512) as f:
    ...     f['x'] = np.arange(6.0).reshape(3, 2)                 # MATLAB's 2x3 [0 2 4; 1 3 5]
    ...     f['x'].attrs['MATLAB_class'] = np.bytes_('double')
    >>> read_variables(path)['x']
    array([[0., 2., 4.],
           [1., 3., 5.]])
    """
    h5py = h5py_or_error(path)
    with h5py.File(path, "r") as f:
        return {name: _value(f, item) for name, item in f.items() if name != "#refs#"}


def _class(item):
    value = item.attrs.get("MATLAB_class", b"")
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _matlab_shape(dims):
    """MATLAB's dimensions from HDF5's (reversed), at least 2-D as MATLAB's are."""
    shape = tuple(int(d) for d in reversed(dims))
    return shape + (1,) * (2 - len(shape)) if len(shape) < 2 else shape


def _value(f, item):
    import h5py

    matlab_class = _class(item)
    if isinstance(item, h5py.Group):
        if "MATLAB_sparse" in item.attrs:
            return _sparse(item, matlab_class)
        if matlab_class == "struct":
            return _struct(f, item)
        return MatlabFunction(np.zeros((1, 1))) if matlab_class == "function_handle" else MatlabOpaque(np.zeros(1))
    if item.attrs.get("MATLAB_empty", 0):
        # The data of an empty array is its dimensions, in MATLAB's order.
        shape = tuple(int(d) for d in item[()]) if item.shape else (0, 0)
        if matlab_class == "char":
            return np.array([], dtype="<U1")
        if matlab_class in ("cell", "struct"):
            return np.empty(shape, dtype=object)
        dtype = bool if matlab_class == "logical" else _NUMERIC.get(matlab_class, np.float64)
        return np.zeros(shape, dtype=dtype)
    data = item[()]
    if matlab_class == "cell" or (data.dtype == h5py.ref_dtype and not matlab_class):
        cell = np.empty(_matlab_shape(data.shape), dtype=object)
        for index, ref in zip(np.ndindex(cell.shape), np.asarray(data).T.flat):
            cell[index] = _value(f, f[ref])
        return cell
    if matlab_class == "char":
        codes = np.asarray(data, dtype=np.uint16).T.reshape(_matlab_shape(data.shape))
        rows = ["".join(map(chr, row)) for row in codes.reshape(codes.shape[0], -1)]
        return np.array(rows, dtype=f"<U{max(1, max(map(len, rows)))}")
    if matlab_class == "logical":
        return np.asarray(data).T.reshape(_matlab_shape(data.shape)).astype(bool)
    if matlab_class in _NUMERIC:
        array = np.asarray(data)
        if array.dtype.names and {"real", "imag"} <= set(array.dtype.names):
            array = array["real"] + 1j * array["imag"]
        else:
            array = array.astype(_NUMERIC[matlab_class], copy=False)
        return np.ascontiguousarray(array.T).reshape(_matlab_shape(data.shape))
    return MatlabFunction(np.zeros((1, 1))) if matlab_class == "function_handle" else MatlabOpaque(np.zeros(1))


def _field_names(group):
    names = group.attrs.get("MATLAB_fields")
    if names is None:
        return list(group.keys())
    return [b"".join(np.asarray(name).ravel()).decode("ascii") for name in names]


def _struct(f, group):
    import h5py

    names = _field_names(group)
    members = {name: group[name] for name in names if name in group}
    # A struct array stores each field as a dataset of references (one per element) without a class.
    is_array = members and all(isinstance(m, h5py.Dataset) and m.dtype == h5py.ref_dtype and not _class(m)
                               for m in members.values())
    if not is_array:
        element = mat_struct()
        element._fieldnames = names
        for name in names:
            value = _value(f, members[name]) if name in members else np.zeros((0, 0))
            setattr(element, name, value)
        array = np.empty((1, 1), dtype=object)
        array[0, 0] = element
        return array
    first = next(iter(members.values()))
    array = np.empty(_matlab_shape(first.shape), dtype=object)
    refs = {name: np.asarray(member[()]).T.reshape(array.shape) for name, member in members.items()}
    for index in np.ndindex(array.shape):
        element = mat_struct()
        element._fieldnames = names
        for name in names:
            value = _value(f, f[refs[name][index]]) if name in refs else np.zeros((0, 0))
            setattr(element, name, value)
        array[index] = element
    return array


def _sparse(group, matlab_class):
    rows = int(group.attrs["MATLAB_sparse"])
    jc = np.asarray(group["jc"][()], dtype=np.int64)
    ir = np.asarray(group["ir"][()], dtype=np.int64) if "ir" in group else np.zeros(0, np.int64)
    data = np.asarray(group["data"][()]) if "data" in group else np.zeros(0)
    if data.dtype.names and {"real", "imag"} <= set(data.dtype.names):
        data = data["real"] + 1j * data["imag"]
    return scipy.sparse.csc_matrix((data.astype(bool) if matlab_class == "logical" else data, ir, jc),
                                   shape=(rows, len(jc) - 1))
