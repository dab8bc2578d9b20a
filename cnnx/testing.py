"""Numerical derivative checks, for testing blocks and networks (cnnx's own and yours).

Every cnnx block returns derivatives "projected onto" the output derivative ``dzdy``: for a block
``y = g(x)``, ``dzdx`` is the gradient of the scalar ``z = sum(dzdy * g(x))``. These helpers compute
that gradient by finite differences and compare it with an analytic one, in three modes:

- ``method='forward'`` (default): MatConvNet's own check. A one-sided difference per element with
  step ``delta`` (default 1e-3), compared element by element with an absolute tolerance taken from
  the joint range of the two results (about 1% of it), as MatConvNet's ``nntest.der`` does.
- ``method='central'``: a two-sided difference, for tight float64 checks with ``rtol``/``atol``.
- ``projections=K``: instead of perturbing every element, compare K directional derivatives along
  random directions. Costs 2K evaluations whatever the size of ``x``, so it suits large tensors.

Examples
--------
>>> import numpy as np
>>> from cnnx import vl_nnrelu
>>> from cnnx.testing import check_derivative
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((4, 4, 2, 1)) + 0.05   # away from the kink at 0
>>> dzdy = rng.standard_normal(x.shape)
>>> result = check_derivative(lambda t: vl_nnrelu(t, leak=0.1), x, dzdy,
...                           vl_nnrelu(x, dzdy, leak=0.1), method='central')
>>> result.max_error <= result.tolerance
True
"""
from collections import namedtuple

import numpy as np

__all__ = ["CheckResult", "check_derivative", "matconvnet_tolerance", "numerical_derivative"]

CheckResult = namedtuple("CheckResult", ["max_error", "tolerance", "numerical"])
CheckResult.__doc__ = """Outcome of a passed check: the largest error, the tolerance it was held to,
and the numerical derivative (shaped like x, or the K directional derivatives with projections)."""


def _projected_output(g, x, dzdy):
    """sum(dzdy * g(x)) accumulated in float64."""
    y = np.asarray(g(x), dtype=np.float64)
    return float(np.sum(np.asarray(dzdy, dtype=np.float64) * y))


def _default_delta(x, method):
    if method == "forward":
        return 1e-3
    scale = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
    return (1e-6 if x.dtype == np.float64 else 1e-3) * scale


def _check_method(method):
    if method not in ("forward", "central"):
        raise ValueError(f"method must be 'forward' or 'central', got {method!r}")


def numerical_derivative(g, x, dzdy, delta=None, method="forward"):
    """Finite-difference derivative of ``sum(dzdy * g(x))`` with respect to every element of ``x``.

    Parameters
    ----------
    g : callable
        Function of one array, returning an array (or a scalar) shaped like ``dzdy``.
    x : ndarray
        Point at which to differentiate; not modified.
    dzdy : array_like
        Projection of the output, shaped like ``g(x)``.
    delta : float, default 1e-3 ('forward'), 1e-6 * max(1, max|x|) ('central', float64)
        Step. The step actually taken is ``(x_i + delta) - x_i`` in ``x``'s precision, which is what
        the difference is divided by.
    method : {'forward', 'central'}
        One-sided (MatConvNet's ``numder``; one evaluation per element) or two-sided (two).

    Returns
    -------
    ndarray
        Shaped like ``x``, in ``x``'s dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.testing import numerical_derivative
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> d = numerical_derivative(lambda t: t ** 2, x, np.ones(3), method='central')
    >>> np.allclose(d, 2 * x)
    True
    """
    _check_method(method)
    x = np.asarray(x)
    if delta is None:
        delta = _default_delta(x, method)
    work = x.copy(order="K")
    out = np.empty(x.shape, dtype=np.float64)
    z0 = _projected_output(g, work, dzdy) if method == "forward" else None
    for i in range(work.size):
        orig = work.flat[i]
        work.flat[i] = orig + delta
        up = work.flat[i]
        z_up = _projected_output(g, work, dzdy)
        if method == "forward":
            out.flat[i] = (z_up - z0) / (float(up) - float(orig))
        else:
            work.flat[i] = orig - delta
            down = work.flat[i]
            z_down = _projected_output(g, work, dzdy)
            out.flat[i] = (z_up - z_down) / (float(up) - float(down))
        work.flat[i] = orig
    return out.astype(x.dtype) if x.dtype.kind == "f" else out


def matconvnet_tolerance(a, b):
    """MatConvNet's default tolerance for comparing ``a`` with ``b``: about 1% of their joint range.

    ``max(1e-2 * (maxv - minv), 1e-3 * max(maxv, -minv))`` over all elements of both arrays.

    Examples
    --------
    >>> from cnnx.testing import matconvnet_tolerance
    >>> float(matconvnet_tolerance([0.0, 10.0], [1.0, 9.0]))
    0.1
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0 and b.size == 0:
        return 0.0
    both = np.concatenate([a.ravel(), b.ravel()])
    maxv, minv = float(np.max(both)), float(np.min(both))
    return max(1e-2 * (maxv - minv), 1e-3 * max(maxv, -minv))


def check_derivative(g, x, dzdy, dzdx, delta=None, tol=None, *, method="forward", rtol=None, atol=None,
                     projections=None, seed=0):
    """Check an analytic derivative ``dzdx`` of ``sum(dzdy * g(x))`` against finite differences.

    Parameters
    ----------
    g : callable
        Function of one array (wrap the block's other arguments in a lambda).
    x : ndarray
        Input at which to check; not modified.
    dzdy : array_like
        Projection of the output, shaped like ``g(x)`` (a random tensor makes a strong check).
    dzdx : ndarray
        Analytic derivative to check, shaped like ``x``.
    delta : float, optional
        Finite-difference step (see `numerical_derivative`).
    tol : float, optional
        Absolute tolerance. Default: MatConvNet's range-based tolerance (`matconvnet_tolerance`) in
        'forward' mode; a negative ``tol`` means "at least ``-tol``, else the default" as in
        MatConvNet. Ignored when ``rtol``/``atol`` are given.
    method : {'forward', 'central'}
        Finite-difference scheme. 'central' without ``tol`` uses ``rtol``/``atol``.
    rtol, atol : float, optional
        Tolerance ``atol + rtol * max(|numerical|)``, the same for every element. Defaults in
        'central' mode: rtol 1e-6 (float64) or 1e-2 (float32), atol 0.
    projections : int, optional
        Compare this many directional derivatives along random unit-variance directions instead of
        every element (``<dzdx, v>`` against the difference of ``sum(dzdy * g(x + delta v))``).
    seed : int, default 0
        Seed of the random directions.

    Returns
    -------
    CheckResult
        ``(max_error, tolerance, numerical)`` when the check passes.

    Raises
    ------
    AssertionError
        If any element differs by more than the tolerance; the message names the worst element,
        its analytic and numerical values and the tolerance.
    ValueError
        If ``dzdx`` is not shaped like ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.testing import check_derivative
    >>> x = np.linspace(-1.0, 1.0, 5)
    >>> r = check_derivative(np.sin, x, np.ones(5), np.cos(x), method='central')
    >>> r.max_error < 1e-8
    True
    """
    _check_method(method)
    x = np.asarray(x)
    dzdx = np.asarray(dzdx)
    if dzdx.shape != x.shape:
        raise ValueError(f"check_derivative: dzdx has shape {dzdx.shape} but x has shape {x.shape}")

    if projections is None:
        numerical = numerical_derivative(g, x, dzdy, delta, method)
        analytic = dzdx
        where = lambda i: tuple(int(j) for j in np.unravel_index(i, x.shape))  # noqa: E731
    else:
        if int(projections) < 1:
            raise ValueError(f"check_derivative: projections must be a positive integer, got {projections}")
        numerical, analytic = _directional_derivatives(g, x, dzdy, dzdx, delta, method, int(projections), seed)
        where = lambda i: f"direction {i}"  # noqa: E731

    num64 = np.asarray(numerical, dtype=np.float64)
    ana64 = np.asarray(analytic, dtype=np.float64)
    if rtol is not None or atol is not None or (method == "central" and tol is None):
        if rtol is None:
            rtol = 1e-6 if x.dtype == np.float64 else 1e-2
        atol = 0.0 if atol is None else atol
        scale = float(np.max(np.abs(num64))) if num64.size else 0.0
        tolerance = atol + rtol * scale
    else:
        default = matconvnet_tolerance(numerical, analytic)
        tolerance = default if tol is None else (max(default, -tol) if tol < 0 else tol)

    if num64.size == 0:
        return CheckResult(0.0, tolerance, numerical)
    err = np.abs(num64 - ana64)
    err = np.where(np.isnan(err), np.inf, err)  # a NaN on either side is a failure, not a pass
    worst = int(np.argmax(err))
    max_error = float(err.flat[worst])
    if not max_error <= tolerance:
        raise AssertionError(
            f"derivative check failed at {where(worst)}: analytic {ana64.flat[worst]:.9g}, "
            f"numerical {num64.flat[worst]:.9g}, |difference| {max_error:.3g} > tolerance {tolerance:.3g} "
            f"({int(np.sum(err > tolerance))} of {err.size} elements out of tolerance; method={method})"
        )
    return CheckResult(max_error, tolerance, numerical)


def _directional_derivatives(g, x, dzdy, dzdx, delta, method, count, seed):
    rng = np.random.default_rng(seed)
    if delta is None:
        delta = _default_delta(x, method)
    z0 = _projected_output(g, x, dzdy) if method == "forward" else None
    numerical = np.empty(count)
    analytic = np.empty(count)
    dzdx64 = np.asarray(dzdx, dtype=np.float64)
    for k in range(count):
        v = rng.standard_normal(x.shape)
        up = (x + delta * v).astype(x.dtype)
        z_up = _projected_output(g, up, dzdy)
        if method == "forward":
            step = np.asarray(up, dtype=np.float64) - np.asarray(x, dtype=np.float64)
            numerical[k] = (z_up - z0) / delta
        else:
            down = (x - delta * v).astype(x.dtype)
            step = (np.asarray(up, dtype=np.float64) - np.asarray(down, dtype=np.float64)) / 2
            numerical[k] = (z_up - _projected_output(g, down, dzdy)) / (2 * delta)
        # Compare against the step actually taken after rounding to x's precision.
        analytic[k] = float(np.sum(dzdx64 * step)) / delta
    return numerical, analytic
