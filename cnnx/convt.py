"""vl_nnconvt: transposed convolution (upsampling, cropping, groups), the adjoint of vl_nnconv.

A transposed convolution is vl_nnconv's data derivative: Y = M^T X where ``vl_nnconv(Y, F, [],
'Stride', Upsample, 'Pad', Crop)`` is X = M Y. So it runs on vl_nnconv's plans and kernels
(cnnx/conv.py) with the roles exchanged: its forward is the convolution's data derivative, its
data derivative the convolution's forward, its filter derivative the convolution's filter
derivative with X and dY swapped.
"""
import numpy as np

from ._checks import (
    as_float_array,
    check_elements,
    common_dtype,
    fortran4,
    is_placeholder,
    out_shape,
    shape4,
)
from ._options import INT_OPTION_LIMIT, Option, parse_options, take_derivative
from .conv import ConvGeometry, ConvProblem, check_buffers, plan_conv, run_conv

_FNAME = "vl_nnconvt"

_OPTIONS = {
    "upsample": Option("pair", (1, 1)),
    "crop": Option("pad4", (0, 0, 0, 0)),
    "num_groups": Option("int", 1),
    "no_der_data": Option("flag", False, display="NoDerData"),
    "no_der_filters": Option("flag", False, display="NoDerFilters"),
    "no_der_biases": Option("flag", False, display="NoDerBiases"),
}


def vl_nnconvt(x, f, b, *args, **kwargs):
    """Transposed convolution of images with a filter bank, plus biases (MatConvNet's vl_nnconvt).

    Call forms::

        y = vl_nnconvt(x, f, b, **options)
        dzdx, dzdf, dzdb = vl_nnconvt(x, f, b, dzdy, **options)

    MatConvNet's name/value form works too: ``vl_nnconvt(x, f, b, 'Upsample', 2, 'Crop', [1 0 1 0])``.
    Each input pixel adds its filters, weighted, into the output, at steps of Upsample::

        y[i,j,g*K+k,n] = b[g*K+k] + sum_{u,v,d in group g} f[u,v,k,d] * x[p,q,d,n]
                         over i + CT = p*UY + u, j + CL = q*UX + v

    With G groups the D = C / G channels d of group g write the K output channels g*K ... g*K+K-1.
    Then ``y.ravel() = M.T @ x.ravel()`` where ``x = M @ y`` is
    ``vl_nnconv(y, f, None, 'Stride', Upsample, 'Pad', Crop)``. The output size is
    YH = UY (H - 1) + FH - CT - CB and YW = UX (W - 1) + FW - CL - CR.

    Parameters
    ----------
    x : ndarray, (H, W, C, N)
        Images, float32 or float64. A 2-D or 3-D array is one image (N = 1); results derived from it
        are then 3-D. H, W and C must be at least 1; N = 0 images give empty results.
    f : ndarray, (FH, FW, K, C)
        Filter bank, each dimension at least 1: filter d (its 4th index) is spread from input
        channel d into K output channels (MatConvNet's layout; vl_nnconv's filters are (FH, FW,
        FC, K)). Its last dimension must be C.
    b : ndarray with K * G elements (any shape), or None
        Biases; None or ``[]`` (a 0 or 0 x 0 array) for none.
    dzdy : ndarray, (YH, YW, K * G, N), optional
        Derivative of the objective with respect to the output. Given, the call runs backward.
    Upsample : 1
        Upsampling factor (the stride of the adjoint convolution), a scalar or [UY, UX], each >= 1.
    Crop : 0
        Output cropping, a scalar or [TOP, BOTTOM, LEFT, RIGHT], each >= 0; the output must keep
        at least one pixel. Upsample and Crop hold whole numbers below 2^62.
    NumGroups : 1
        Filter groups G, at least 1; G must divide C.
    NoDerData, NoDerFilters, NoDerBiases : false
        Flags: backward skips that derivative and returns None for it.

    Returns
    -------
    y : ndarray, (YH, YW, K * G, N)
        Forward: the output, Fortran-ordered, of x's dtype.
    dzdx, dzdf, dzdb : ndarray or None
        Backward: the derivatives, shaped like x, f and b (b keeps the caller's shape). dzdb is
        None without biases, and each is None when its NoDer flag is set.

    Raises
    ------
    TypeError
        Arrays that are not float32/float64, arrays of different dtypes, an unknown option.
    ValueError
        Wrong number of dimensions, x with zero height, width or channels, no filters or filters
        with a zero dimension, f's last dimension not C, G not dividing C, an Upsample below 1, a
        negative Crop, a Crop that leaves no output, option values that are not whole numbers
        below 2^62, a bias or dzdy of the wrong size, or sizes too large to index.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnconvt
    >>> x = np.ones((4, 4, 3, 2), np.float32, order="F")
    >>> f = np.ones((4, 4, 5, 3), np.float32, order="F")
    >>> y = vl_nnconvt(x, f, None, 'Upsample', 2, 'Crop', 1)
    >>> y.shape, float(y[0, 0, 0, 0]), float(y[3, 3, 0, 0])
    ((8, 8, 5, 2), 3.0, 12.0)
    >>> dzdx, dzdf, dzdb = vl_nnconvt(x, f, np.zeros(5, np.float32), np.ones_like(y), upsample=2, crop=1)
    >>> dzdx.shape, dzdf.shape, dzdb.shape
    ((4, 4, 3, 2), (4, 4, 5, 3), (5,))
    """
    dzdy, rest, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, rest, kwargs, _OPTIONS)
    uy, ux = opts["upsample"]
    ct, cb, cl, cr = opts["crop"]
    groups = opts["num_groups"]

    x = as_float_array(x, "X", _FNAME)
    if is_placeholder(f):
        raise ValueError(f"{_FNAME}: F is empty; a transposed convolution needs filters (FH x FW x K x C)")
    f = as_float_array(f, "F", _FNAME)
    b = None if is_placeholder(b) else as_float_array(b, "B", _FNAME)
    dzdy = as_float_array(dzdy, "DZDY", _FNAME, allow_none=True)
    dtype = np.dtype(common_dtype(_FNAME, X=x, F=f, B=b, DZDY=dzdy))

    H, W, C, N = shape4(x, "X", _FNAME)
    if min(H, W, C) == 0:
        raise ValueError(f"{_FNAME}: X has shape {x.shape}; H, W and C must be at least 1 (only N may be 0)")
    FH, FW, K, FD = shape4(f, "F", _FNAME)
    if min(FH, FW, K, FD) == 0:
        raise ValueError(f"{_FNAME}: F has shape {f.shape}; FH, FW, K and C must be at least 1")
    if FD != C:
        raise ValueError(f"{_FNAME}: F has {FD} filters (its 4th dimension) but X has {C} channels (they must match)")
    if groups < 1:
        raise ValueError(f"{_FNAME}: NumGroups must be at least 1, got {groups}")
    if C % groups:
        raise ValueError(f"{_FNAME}: NumGroups ({groups}) does not divide the {C} channels of X")
    KG = K * groups
    # The output before cropping is the adjoint convolution's padded input.
    full_h, full_w = (H - 1) * uy + FH, (W - 1) * ux + FW
    if full_h >= INT_OPTION_LIMIT or full_w >= INT_OPTION_LIMIT:
        raise ValueError(f"{_FNAME}: Y before cropping would be {full_h} x {full_w}; each must be less than 2^62")
    YH, YW = full_h - ct - cb, full_w - cl - cr
    if YH < 1 or YW < 1:
        raise ValueError(f"{_FNAME}: Crop {[ct, cb, cl, cr]} leaves no output (Y would be {YH} x {YW}; "
                         f"before cropping {full_h} x {full_w})")
    if b is not None and b.size != KG:
        raise ValueError(f"{_FNAME}: B has {b.size} elements but Y has K * NumGroups = {KG} channels "
                         "(None or [] for no biases)")
    y_shape = (YH, YW, KG, N)
    check_elements(_FNAME, "Y", *y_shape)
    # The adjoint convolution: Y (its input) -> X (its output), F its filter bank (FC = K, D filters).
    geom = ConvGeometry(YH, YW, KG, N, FH, FW, K, C, H, W, uy, ux, ct, cb, cl, cr)
    check_buffers(geom, _FNAME)
    if dzdy is not None and shape4(dzdy, "DZDY", _FNAME) != y_shape:
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but Y has shape {y_shape}")

    x4 = fortran4(x, (H, W, C, N))
    f4 = fortran4(f, (FH, FW, K, C))
    none = np.zeros(1, dtype)  # conv's placeholder for arrays a direction does not read

    def adjoint(conv_x, conv_dy=None, **needs):
        """Run the adjoint convolution: forward on conv_x, or backward (``needs``) given conv_dy."""
        problem = ConvProblem(geom, dtype, conv_x, f4, none, False, dy4=conv_dy, x_shape=y_shape,
                              f_shape=f4.shape, **needs)
        return run_conv(problem, plan_conv(geom, dtype, conv_dy is not None))

    if dzdy is None:
        # Forward: the convolution's data derivative at dY = X (it reads its X only for dF).
        y = adjoint(none, x4, need_dx=True)[0]
        if b is not None:
            y += b.reshape(1, 1, KG, 1, order="F").astype(dtype, copy=False)
        return y.reshape(out_shape(y_shape, x.ndim), order="F")

    dy4 = fortran4(dzdy, y_shape)
    dzdx = dzdf = dzdb = None
    if not opts["no_der_data"]:
        dzdx = adjoint(dy4).reshape(x.shape, order="F")
    if not opts["no_der_filters"]:
        dzdf = adjoint(dy4, x4, need_df=True)[1].reshape(f.shape, order="F")
    if b is not None and not opts["no_der_biases"]:
        # numpy sums in a fixed order (no threads); in double, as float32 sums of many pixels drift.
        dzdb = dy4.sum(axis=(0, 1, 3), dtype=np.float64).astype(dtype).reshape(b.shape, order="F")
    return dzdx, dzdf, dzdb
