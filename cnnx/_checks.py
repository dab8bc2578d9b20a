"""Input checks shared by the blocks: dtypes, MATLAB-style 4-D shapes, sizes that would overflow.

Everything here runs before a kernel is entered, so a kernel can trust its arguments.
"""
import numpy as np

from ._options import whole_numbers

# Kernels index with 64-bit integers but hand matrix sizes to BLAS as 32-bit ints.
MAX_BLAS_DIM = 2**31 - 1
MAX_ELEMENTS = 2**62


def as_float_array(value, name, fname, allow_none=False):
    """Return ``value`` as a float32/float64 ndarray, refusing integer, bool, complex and object data."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{fname}: {name} must be an array, got None")
    arr = np.asarray(value)
    if arr.dtype not in (np.float32, np.float64):
        kind = {"i": "an integer", "u": "an unsigned integer", "b": "a logical", "c": "a complex"}.get(
            arr.dtype.kind, f"a {arr.dtype}"
        )
        raise TypeError(f"{fname}: {name} must be a float32 or float64 array, got {kind} array ({arr.dtype})")
    return arr


def is_placeholder(value):
    """Whether ``value`` is MATLAB's empty placeholder ``[]``: None, an empty list, or an empty
    array of shape (0,) or (0, 0) (how ``[]`` arrives from a .mat file).

    Other arrays with a zero dimension are not placeholders: for a block they are wrong sizes.
    """
    return value is None or (np.size(value) == 0 and np.shape(value) in ((0,), (0, 0)))


def common_dtype(fname, **arrays):
    """Return the one dtype shared by all non-None ``arrays``; TypeError naming the odd one out."""
    dtype = None
    first = None
    for name, arr in arrays.items():
        if arr is None:
            continue
        if dtype is None:
            dtype, first = arr.dtype, name
        elif arr.dtype != dtype:
            raise TypeError(
                f"{fname}: {name} is {arr.dtype} but {first} is {dtype}; all arrays must share one dtype"
            )
    return dtype


def like(x, name, fname, reference, ref_name):
    """``x`` as a float array of ``reference``'s dtype and exact shape (else TypeError/ValueError)."""
    arr = as_float_array(x, name, fname)
    if arr.dtype != reference.dtype:
        common_dtype(fname, **{ref_name: reference, name: arr})  # raises, naming both
    if arr.shape != reference.shape:
        raise ValueError(f"{fname}: {name} has shape {arr.shape} but {ref_name} has shape {reference.shape}")
    return arr


def can_hold(out, reference):
    """Whether ``out`` can take a result shaped like ``reference``: a writeable, aligned,
    Fortran-contiguous array of its dtype and shape."""
    return (isinstance(out, np.ndarray) and out.dtype == reference.dtype and out.shape == reference.shape
            and out.flags.f_contiguous and out.flags.writeable and out.flags.aligned)


def result_array(fname, out, reference, *inputs):
    """The array an elementwise block writes its result into: ``out`` (checked with
    :func:`can_hold`; it may be one of ``inputs`` itself, but not overlap one partly), or a new
    Fortran-ordered one shaped like ``reference`` when ``out`` is None."""
    if out is None:
        return np.empty(reference.shape, dtype=reference.dtype, order="F")
    if not isinstance(out, np.ndarray) or out.dtype != reference.dtype:
        kind = f"a {out.dtype} array" if isinstance(out, np.ndarray) else type(out).__name__
        raise TypeError(f"{fname}: OUT must be a {reference.dtype} array, got {kind}")
    if not can_hold(out, reference):
        faults = [fault for fault, bad in ((f"has shape {out.shape}", out.shape != reference.shape),
                                           ("is not Fortran-contiguous", not out.flags.f_contiguous),
                                           ("is read-only", not out.flags.writeable),
                                           ("is not aligned", not out.flags.aligned)) if bad]
        raise ValueError(f"{fname}: OUT must be a writeable, aligned, Fortran-contiguous array of shape "
                         f"{reference.shape}; it {', '.join(faults)}")
    for arr in inputs:
        if np.may_share_memory(out, arr) and out.ctypes.data != arr.ctypes.data:
            raise ValueError(f"{fname}: OUT overlaps an input without being it")
    return out


def shape4(arr, name, fname):
    """Return ``arr``'s shape as MATLAB's (H, W, C, N), padding dropped trailing singleton dimensions.

    Arrays of 2 to 4 dimensions are accepted (a MATLAB H x W x C x 1 array arrives as 3-D).
    """
    if not 2 <= arr.ndim <= 4:
        raise ValueError(f"{fname}: {name} must have 2 to 4 dimensions (H x W x C x N), got {arr.ndim} ({arr.shape})")
    return tuple(arr.shape) + (1,) * (4 - arr.ndim)


def input_size(fname, label, value):
    """A backward call's stand-in for X's shape: 2 to 4 non-negative whole numbers (MATLAB's
    H x W [x C [x N]]) as a tuple of ints."""
    sizes = whole_numbers(fname, label, value)
    if not 2 <= len(sizes) <= 4 or min(sizes) < 0:
        raise ValueError(f"{fname}: {label} must be 2 to 4 non-negative sizes [H W C N], got {list(sizes)}")
    return tuple(int(v) for v in sizes)


def out_shape(shape4d, ndim):
    """Drop the batch dimension of a 4-D result when the input came without one (MATLAB's habit)."""
    return shape4d if ndim == 4 else shape4d[:3]


def fortran4(arr, shape):
    """A Fortran-ordered view (or copy) of ``arr`` reshaped to the 4-D ``shape``."""
    return np.asfortranarray(arr).reshape(shape, order="F")


def check_elements(fname, what, *dims):
    """Raise ValueError if the product of ``dims`` is too large to index or allocate."""
    total = 1
    for d in dims:
        total *= int(d)
    if total > MAX_ELEMENTS:
        raise ValueError(f"{fname}: {what} would have {total} elements, more than can be indexed")
    return total


def check_blas_dims(fname, what, *dims):
    """Raise ValueError if a matrix dimension handed to BLAS does not fit in a 32-bit integer."""
    for d in dims:
        if int(d) > MAX_BLAS_DIM:
            raise ValueError(f"{fname}: {what} has a dimension of {d}, more than BLAS can take (2^31 - 1)")
