"""The bilinear sampler layer kind (``vl_nnbilinearsampler``): DagNN's ``dagnn.BilinearSampler``
(SimpleNN has none).

Examples
--------
>>> from cnnx.layers.bilinearsampler import BilinearSampler
>>> BilinearSampler().get_output_sizes([(32, 32, 3, 2), (2, 16, 16, 4)], [])
[(16, 16, 3, 4)]
"""
from ..bilinearsampler import vl_nnbilinearsampler
from .base import Layer
from .registry import register_block


# ------------------------------------------------------------------------------------------------
# DagNN block
# ------------------------------------------------------------------------------------------------


@register_block
class BilinearSampler(Layer):
    """Bilinear sampler block (``vl_nnbilinearsampler``): inputs x and grid, output y.

    Both inputs get derivatives. y is Ho x Wo x C x No for x of H x W x C x N and a grid of
    2 x Ho x Wo x No (MatConvNet's ``getOutputSizes`` says N images; No is what the block gives).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import AffineGridGenerator, BilinearSampler, DagNN
    >>> net = DagNN()
    >>> net.add_layer('grid', AffineGridGenerator(Ho=2, Wo=2), 'theta', 'grid')
    >>> net.add_layer('sampler', BilinearSampler(), ['x', 'grid'], 'y')
    >>> identity = np.array([1.0, 0, 0, 1, 0, 0]).reshape(1, 1, 6, 1)
    >>> x = np.arange(4.0).reshape(2, 2, 1, 1)
    >>> net.eval({'x': x, 'theta': identity})
    >>> bool(np.allclose(net.get_var('y').value, x))
    True
    """

    type_name = "dagnn.BilinearSampler"

    def forward(self, inputs, params):
        return [vl_nnbilinearsampler(inputs[0], inputs[1])]

    def backward(self, inputs, params, der_outputs):
        dx, dgrid = vl_nnbilinearsampler(inputs[0], inputs[1], der_outputs[0])
        return [dx, dgrid], []

    def get_output_sizes(self, input_sizes, param_sizes):
        if len(input_sizes) < 2 or input_sizes[0] is None or input_sizes[1] is None:
            return [None]
        x_size, grid_size = input_sizes[0], input_sizes[1]
        return [(grid_size[1], grid_size[2], x_size[2], grid_size[3])]
