"""vl_nncrop: spatial cropping of images (MatConvNet's vl_nncrop)."""
import numpy as np

from ._checks import as_float_array, shape4
from ._checks import input_size as checked_input_size  # the argument is named input_size
from ._options import Option, validate_value

_FNAME = "vl_nncrop"


def vl_nncrop(x, crop, dzdy=None, input_size=None):
    """Crop images spatially by [TOP, BOTTOM, LEFT, RIGHT] pixels.

    Call forms::

        y = vl_nncrop(x, crop)
        dzdx = vl_nncrop(x, crop, dzdy)
        dzdx = vl_nncrop(None, crop, dzdy, input_size)

    Parameters
    ----------
    x : ndarray, (H, W, C, N), or None
        Images, float32 or float64 (2 to 4 dimensions). None (MATLAB's ``[]``) in the last call
        form, where ``input_size`` gives X's size.
    crop : sequence of 4 ints
        [TOP, BOTTOM, LEFT, RIGHT] pixels dropped, each >= 0 (a scalar crops all four); TOP +
        BOTTOM may not exceed H, LEFT + RIGHT not W (their sum equal to it leaves an empty output).
    dzdy : ndarray, (H - TOP - BOTTOM, W - LEFT - RIGHT, C, N), optional
        Derivative of the objective with respect to the output. Given, the call runs backward.
    input_size : sequence of 2 to 4 ints, optional
        X's size when x is None.

    Returns
    -------
    y or dzdx : ndarray
        Forward: the cropped images (a Fortran-ordered copy). Backward: dzdy placed into zeros of
        X's size.

    Raises
    ------
    TypeError
        Arrays that are not float32/float64.
    ValueError
        A crop that is not 1 or 4 non-negative whole numbers, a crop larger than X, no x and no
        input_size, or a dzdy of the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nncrop
    >>> x = np.arange(24.0).reshape(4, 6, order="F")
    >>> vl_nncrop(x, [1, 2, 0, 3])
    array([[1., 5., 9.]])
    >>> vl_nncrop(x, [1, 2, 0, 3], np.ones((1, 3))).sum()
    np.float64(3.0)
    """
    ct, cb, cl, cr = validate_value(_FNAME, "CROP", Option("pad4"), crop)
    dzdy = as_float_array(dzdy, "DZDY", _FNAME, allow_none=True)
    if x is None or (isinstance(x, (list, tuple)) and len(x) == 0):
        if dzdy is None or input_size is None:
            raise ValueError(f"{_FNAME}: X is empty; the backward call needs DZDY and INPUTSIZE")
        x_shape = checked_input_size(_FNAME, "INPUTSIZE", input_size)
    else:
        x = as_float_array(x, "X", _FNAME)
        shape4(x, "X", _FNAME)
        x_shape = x.shape
    H, W = x_shape[0], x_shape[1]
    if ct + cb > H or cl + cr > W:
        raise ValueError(f"{_FNAME}: CROP {[ct, cb, cl, cr]} is larger than X ({H} x {W})")
    rows, cols = slice(ct, H - cb), slice(cl, W - cr)
    if dzdy is None:
        return np.asfortranarray(x[rows, cols])
    y_shape = (H - ct - cb, W - cl - cr) + tuple(x_shape[2:])
    if shape4(dzdy, "DZDY", _FNAME) != tuple(y_shape) + (1,) * (4 - len(y_shape)):
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but Y has shape {y_shape}")
    dzdx = np.zeros(x_shape, dzdy.dtype, order="F")
    dzdx[rows, cols] = dzdy.reshape(y_shape, order="F")
    return dzdx
