"""The sampling-grid generator layer kinds: DagNN's ``dagnn.AffineGridGenerator`` and
``dagnn.UniformScalingGridGenerator`` (SimpleNN has none), which turn transformation parameters
into the 2 x Ho x Wo x N grids of :class:`~cnnx.layers.bilinearsampler.BilinearSampler`.

Both transform the Ho x Wo grid of points (v_i, u_j), v_i = MATLAB's ``linspace(-1, 1, Ho)(i)`` and
u_j = ``linspace(-1, 1, Wo)(j)`` (the input image's pixel centres when Ho, Wo are its H, W; a
1-point linspace is the point 1, as MATLAB's).

Examples
--------
>>> from cnnx.layers.gridgenerators import AffineGridGenerator
>>> AffineGridGenerator(Ho=8, Wo=6).get_output_sizes([(1, 1, 6, 5)], [])
[(2, 8, 6, 5)]
"""
from functools import partial

import numpy as np

from .._checks import as_float_array, shape4
from .base import Layer, Property, int_tuple
from .registry import register_block


def _linspace(count):
    """MATLAB's linspace(-1, 1, count): ``count`` points from -1 to 1; one point is 1."""
    return np.linspace(-1.0, 1.0, count) if count != 1 else np.ones(1)


def _parameters(owner, value, count):
    """The 1 x 1 x count x N transformation parameters as a float array and its N."""
    params = as_float_array(value, "the transformation parameters", owner)
    size = shape4(params, "the transformation parameters", owner)
    if size[:3] != (1, 1, count):
        raise ValueError(f"{owner}: the transformation parameters must be 1 x 1 x {count} x N, "
                         f"got shape {params.shape}")
    return params, size[3]


_GRID_SIZE = partial(int_tuple, lengths={1: (0,)}, minimum=0)


class _GridGenerator(Layer):
    """What both generators share: the output grid size Ho x Wo and the output sizes."""

    saved_properties = ("Ho", "Wo")

    def __init__(self, Ho=0, Wo=0):
        self.Ho = Ho
        self.Wo = Wo

    Ho = Property(lambda owner, name, value: _GRID_SIZE(owner, name, value)[0], "Height of the output grid.")
    Wo = Property(lambda owner, name, value: _GRID_SIZE(owner, name, value)[0], "Width of the output grid.")

    def get_output_sizes(self, input_sizes, param_sizes):
        if not input_sizes or input_sizes[0] is None:
            return [None]
        return [(2, self.Ho, self.Wo, input_sizes[0][3])]


@register_block
class AffineGridGenerator(_GridGenerator):
    """Affine sampling grids from 1 x 1 x 6 x N parameters (MatConvNet's AffineGridGenerator).

    The six parameters [c1 ... c6] of an image are the transform
    ``v' = c1 v + c2 u + c5``, ``u' = c3 v + c4 u + c6`` (so [1 0 0 1 0 0] is the identity), and
    ``grid[:, i, j, n] = (v', u')`` at the base point (v_i, u_j).

    Parameters
    ----------
    Ho, Wo : int, default 0
        Size of the output grid.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import AffineGridGenerator
    >>> shift_down = np.array([1.0, 0, 0, 1, 0.5, 0]).reshape(1, 1, 6, 1)
    >>> AffineGridGenerator(Ho=3, Wo=1).forward([shift_down], [])[0][:, :, 0, 0]
    array([[-0.5,  0.5,  1.5],
           [ 1. ,  1. ,  1. ]])
    """

    type_name = "dagnn.AffineGridGenerator"

    def _base_points(self):
        """The base points (v, u) as an (Ho * Wo) x 2 array, v varying fastest."""
        v, u = np.meshgrid(_linspace(self.Ho), _linspace(self.Wo), indexing="ij")
        return np.stack([v.reshape(-1, order="F"), u.reshape(-1, order="F")], axis=1)

    def forward(self, inputs, params):
        theta, count = _parameters("AffineGridGenerator", inputs[0], 6)
        # c as MATLAB's 2 x 3 [L t] per image: L = [c1 c3; c2 c4], t = [c5; c6].
        c = theta.reshape(2, 3, count, order="F").astype(np.float64)
        grid = np.einsum("pe,edn->dpn", self._base_points(), c[:, :2]) + c[:, 2][:, None, :]
        return [np.asfortranarray(grid.reshape(2, self.Ho, self.Wo, count, order="F").astype(theta.dtype))]

    def backward(self, inputs, params, der_outputs):
        theta, count = _parameters("AffineGridGenerator", inputs[0], 6)
        dy = np.asarray(der_outputs[0], dtype=np.float64).reshape(2, self.Ho * self.Wo, count, order="F")
        der = np.empty((2, 3, count))
        der[:, :2] = np.einsum("pe,dpn->edn", self._base_points(), dy)
        der[:, 2] = dy.sum(axis=1)
        return [np.asfortranarray(der.reshape(theta.shape, order="F").astype(theta.dtype))], []


@register_block
class UniformScalingGridGenerator(_GridGenerator):
    """Scaled and translated sampling grids from 1 x 1 x 3 x N parameters (MatConvNet's
    UniformScalingGridGenerator).

    The three parameters [s, tv, tu] of an image give ``grid[:, i, j, n] = (s v_i + tv, s u_j + tu)``.

    Parameters
    ----------
    Ho, Wo : int, default 0
        Size of the output grid.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import UniformScalingGridGenerator
    >>> zoom = np.array([0.5, 0.0, 0.25]).reshape(1, 1, 3, 1)
    >>> UniformScalingGridGenerator(Ho=1, Wo=3).forward([zoom], [])[0][:, 0, :, 0]
    array([[ 0.5 ,  0.5 ,  0.5 ],
           [-0.25,  0.25,  0.75]])
    """

    type_name = "dagnn.UniformScalingGridGenerator"

    def _base_grid(self):
        """The base points as a 2 x Ho x Wo array."""
        v, u = np.meshgrid(_linspace(self.Ho), _linspace(self.Wo), indexing="ij")
        return np.stack([v, u])

    def forward(self, inputs, params):
        theta, count = _parameters("UniformScalingGridGenerator", inputs[0], 3)
        t = theta.reshape(3, count, order="F").astype(np.float64)
        grid = self._base_grid()[..., None] * t[0] + t[1:, None, None, :]
        return [np.asfortranarray(grid.astype(theta.dtype))]

    def backward(self, inputs, params, der_outputs):
        theta, count = _parameters("UniformScalingGridGenerator", inputs[0], 3)
        dy = np.asarray(der_outputs[0], dtype=np.float64).reshape(2, self.Ho, self.Wo, count, order="F")
        der = np.empty((3, count))
        der[0] = np.einsum("dij,dijn->n", self._base_grid(), dy)
        der[1:] = dy.sum(axis=(1, 2))
        return [np.asfortranarray(der.reshape(theta.shape, order="F").astype(theta.dtype))], []
