"""cnnx: MatConvNet's convolutional-network blocks for Python, as fast Cython/OpenMP kernels.

Tensors are MatConvNet's: (H, W, C, N) arrays, float32 by default, float64 supported. Each block is
one function that runs forward, or backward when given the derivative of the output (``dzdy``).
Networks are SimpleNN layer lists (`vl_simplenn`) or `DagNN` graphs, trained by `cnn_train`.
"""
import importlib

from ._threads import get_num_threads, set_num_threads
from .activations import (vl_nnclippedrelu, vl_nnelu, vl_nngelu, vl_nnprelu, vl_nnrelu, vl_nnselu, vl_nnsilu,
                          vl_nnsoftplus, vl_nntanh)
from .bilinearsampler import vl_nnbilinearsampler
from .bnorm import vl_nnbnorm
from .concat import vl_nnconcat
from .conv import vl_nnconv
from .convt import vl_nnconvt
from .crop import vl_nncrop
from .dropout import vl_nndropout
from .normalize import vl_nnnoffset, vl_nnnormalize, vl_nnnormalizelp, vl_nnspnorm
from .softmax import vl_nnsigmoid, vl_nnsoftmax
from .softmaxloss import vl_nnsoftmaxloss
from .nnloss import vl_nnloss
from .pdist import vl_nnpdist
from .pool import vl_nnpool
from .roipool import vl_nnroipool
from .simplenn import register_layer_type, vl_simplenn, vl_simplenn_display, vl_simplenn_tidy
from .dagnn import DagNN
from .io import load_matconvnet, save_matconvnet
from .train import cnn_train
from . import dagnn, deploy, models, solvers, testing

__version__ = "0.1.0"


def __getattr__(name):
    # cnnx.datasets is imported when first used: its downloads (pooch, requests, tqdm) would add a
    # tenth of a second to every 'import cnnx'.
    if name == "datasets":
        return importlib.import_module(".datasets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DagNN",
    "cnn_train",
    "dagnn",
    "datasets",
    "deploy",
    "get_num_threads",
    "load_matconvnet",
    "models",
    "register_layer_type",
    "save_matconvnet",
    "set_num_threads",
    "solvers",
    "testing",
    "vl_nnbilinearsampler",
    "vl_nnbnorm",
    "vl_nnclippedrelu",
    "vl_nnconcat",
    "vl_nnconv",
    "vl_nnconvt",
    "vl_nncrop",
    "vl_nndropout",
    "vl_nnelu",
    "vl_nngelu",
    "vl_nnloss",
    "vl_nnnoffset",
    "vl_nnnormalize",
    "vl_nnnormalizelp",
    "vl_nnpdist",
    "vl_nnpool",
    "vl_nnprelu",
    "vl_nnrelu",
    "vl_nnroipool",
    "vl_nnselu",
    "vl_nnsigmoid",
    "vl_nnsilu",
    "vl_nnsoftmax",
    "vl_nnsoftmaxloss",
    "vl_nnsoftplus",
    "vl_nnspnorm",
    "vl_nntanh",
    "vl_simplenn",
    "vl_simplenn_display",
    "vl_simplenn_tidy",
]
