"""vl_nnconcat: join tensors along one dimension (forward) and split the derivative back (backward).

A pure copy, so it is written with NumPy; the dimension is 1-based as in MatConvNet (3 = channels).
"""
import numpy as np

from ._checks import as_float_array, common_dtype, shape4
from ._options import Option, parse_options, take_derivative

_FNAME = "vl_nnconcat"
_SPEC = {"input_sizes": Option("any")}


def vl_nnconcat(inputs, dim=3, *args, **kwargs):
    """Concatenate tensors along a dimension; backward splits the derivative into matching slices.

    Call forms::

        Y = vl_nnconcat(INPUTS)                  # along dimension 3 (channels)
        Y = vl_nnconcat(INPUTS, DIM)
        DZDINPUTS = vl_nnconcat(INPUTS, DIM, DZDY)
        DZDINPUTS = vl_nnconcat(None, DIM, DZDY, 'inputSizes', SIZES)

    Forward is MATLAB's ``cat(DIM, INPUTS{:})``. Backward returns, for each input, the slice of
    ``DZDY`` along ``DIM`` that the input occupied in ``Y``, shaped like that input.

    Parameters
    ----------
    inputs : sequence of ndarray, or None in backward with InputSizes
        Tensors (H, W, C, N) (2 to 4 dimensions; missing trailing dimensions are 1, as in MATLAB),
        float32 or float64, all of one dtype, equal in every dimension except ``dim``.
    dim : int, default 3
        1-based dimension to join along: 1 = height, 2 = width, 3 = channels, 4 = batch.
    dzdy : ndarray, optional
        Derivative of the output (positional after ``dim``, or ``dzdy=``); its presence selects
        backward mode.
    InputSizes : None
        Backward only: a sequence of the inputs' shapes, used instead of ``inputs`` (which may then
        be None or empty), so that the inputs need not be kept for backward.

    Returns
    -------
    y : ndarray
        Forward: the concatenation, Fortran-ordered, of the inputs' dtype. It has as many
        dimensions as the largest input, and at least ``dim``.
    dzdinputs : list of ndarray
        Backward: one Fortran-ordered slice of ``dzdy`` per input, each of that input's shape.

    Raises
    ------
    TypeError
        If an array is not float32/float64, the dtypes differ, or an option is unknown.
    ValueError
        If ``dim`` is not 1..4 (NaN, inf and fractions included), there are no inputs, an
        InputSizes entry is not a list of whole non-negative numbers, the inputs disagree in a
        dimension other than ``dim``, or ``dzdy`` does not have the shape of the output. Inputs
        with zero-size dimensions are concatenated like any others.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.concat import vl_nnconcat
    >>> a = np.ones((2, 2, 1, 1), np.float32)
    >>> b = np.zeros((2, 2, 3, 1), np.float32)
    >>> y = vl_nnconcat([a, b], 3)
    >>> y.shape
    (2, 2, 4, 1)
    >>> da, db = vl_nnconcat([a, b], 3, np.arange(16, dtype=np.float32).reshape(2, 2, 4, 1))
    >>> da.shape, db.shape
    ((2, 2, 1, 1), (2, 2, 3, 1))
    """
    dzdy, args, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, args, kwargs, _SPEC)
    axis = _axis(dim)

    if dzdy is None:
        return _forward(inputs, axis)
    return _backward(inputs, axis, dzdy, opts["input_sizes"])


def _axis(dim):
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer, float, np.floating)):
        raise TypeError(f"{_FNAME}: DIM must be an integer from 1 to 4, got {dim!r}")
    if dim not in (1, 2, 3, 4):  # also NaN, inf and huge values
        raise ValueError(f"{_FNAME}: DIM must be an integer from 1 to 4, got {dim!r}")
    return int(dim) - 1


def _as_input_list(inputs):
    if inputs is None:
        return []
    if isinstance(inputs, np.ndarray):
        raise TypeError(f"{_FNAME}: INPUTS must be a list of arrays, got a single array")
    return list(inputs)


def _forward(inputs, axis):
    arrays = [as_float_array(x, f"INPUTS[{i}]", _FNAME) for i, x in enumerate(_as_input_list(inputs))]
    if not arrays:
        raise ValueError(f"{_FNAME}: INPUTS is empty; there is nothing to concatenate")
    common_dtype(_FNAME, **{f"INPUTS[{i}]": x for i, x in enumerate(arrays)})
    shapes = [shape4(x, f"INPUTS[{i}]", _FNAME) for i, x in enumerate(arrays)]
    out4 = _joined_shape(shapes, axis, "INPUTS")
    ndim = max(max(x.ndim for x in arrays), axis + 1)

    y = np.empty(out4, dtype=arrays[0].dtype, order="F")
    start = 0
    for x, shape in zip(arrays, shapes):
        stop = start + shape[axis]
        y[_slice(axis, start, stop)] = x.reshape(shape)
        start = stop
    return y.reshape(out4[:ndim], order="F")


def _backward(inputs, axis, dzdy, input_sizes):
    if input_sizes is not None:
        shapes_given = [_size_tuple(s, i) for i, s in enumerate(_as_input_list(input_sizes))]
        if not shapes_given:
            raise ValueError(f"{_FNAME}: InputSizes is empty")
    else:
        arrays = [as_float_array(x, f"INPUTS[{i}]", _FNAME) for i, x in enumerate(_as_input_list(inputs))]
        if not arrays:
            raise ValueError(f"{_FNAME}: backward needs INPUTS or the InputSizes option")
        shapes_given = [x.shape for x in arrays]
    for i, s in enumerate(shapes_given):
        if not 2 <= len(s) <= 4:
            raise ValueError(f"{_FNAME}: input {i} must have 2 to 4 dimensions (H x W x C x N), got {s}")
    shapes = [s + (1,) * (4 - len(s)) for s in shapes_given]
    out4 = _joined_shape(shapes, axis, "InputSizes" if input_sizes is not None else "INPUTS")

    dzdy = as_float_array(dzdy, "DZDY", _FNAME)
    if input_sizes is None:
        common_dtype(_FNAME, **{f"INPUTS[{i}]": x for i, x in enumerate(arrays)}, DZDY=dzdy)
    if shape4(dzdy, "DZDY", _FNAME) != out4:
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but the concatenation has shape {out4}")
    dzdy4 = dzdy.reshape(out4)

    ders = []
    start = 0
    for given, shape in zip(shapes_given, shapes):
        stop = start + shape[axis]
        part = np.asfortranarray(dzdy4[_slice(axis, start, stop)])
        ders.append(part.reshape(given, order="F"))
        start = stop
    return ders


def _size_tuple(size, i):
    try:
        arr = np.asarray(size)
    except ValueError:  # ragged
        arr = np.asarray(None)
    if (arr.ndim != 1 or arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or np.any(arr < 0)
            or np.any(arr != np.trunc(arr))):
        raise ValueError(f"{_FNAME}: InputSizes[{i}] must be a list of non-negative integers, got {size!r}")
    return tuple(int(v) for v in arr)


def _joined_shape(shapes, axis, what):
    first = shapes[0]
    for i, shape in enumerate(shapes[1:], start=1):
        for d in range(4):
            if d != axis and shape[d] != first[d]:
                raise ValueError(
                    f"{_FNAME}: {what}[{i}] has shape {shape} but {what}[0] has {first}; they may differ "
                    f"only in dimension {axis + 1} (DIM)"
                )
    out = list(first)
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def _slice(axis, start, stop):
    index = [slice(None)] * 4
    index[axis] = slice(start, stop)
    return tuple(index)
