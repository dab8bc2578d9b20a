"""cnnx: MatConvNet's convolutional-network blocks for Python, as fast Cython/OpenMP kernels.

Tensors are MatConvNet's: (H, W, C, N) arrays, float32 by default, float64 supported. Each block is
one function that runs forward, or backward when given the derivative of the output (``dzdy``).
"""
from ._threads import get_num_threads, set_num_threads
from .activations import vl_nnprelu, vl_nnrelu
from .conv import vl_nnconv
from .dropout import vl_nndropout
from .loss import vl_nnsoftmaxloss
from .pool import vl_nnpool
from . import testing

__version__ = "0.1.0"

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "testing",
    "vl_nnconv",
    "vl_nndropout",
    "vl_nnpool",
    "vl_nnprelu",
    "vl_nnrelu",
    "vl_nnsoftmaxloss",
]
