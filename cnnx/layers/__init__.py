"""Layer kinds: one module per kind, the single place that defines it for every part of cnnx.

A kind module (``conv``, ``convt``, ``pool``, ``relu``, ``prelu``, ``dropout``, ``bnorm``, ``loss``, ``pdist``,
``concat``, ``sum``, ``crop``, ``scale``, ``bilinearsampler``, ``gridgenerators``, ``softmax``, ``sigmoid``,
``roipool``, ``lrn``, ``noffset``, ``spnorm``, ``custom``; ``activations`` holds seven kinds that
differ only in their block function) holds, side by side:

- the DagNN block class (MatConvNet's ``dagnn.Conv``, ...): its properties and how they are
  checked and saved, its forward and backward over the block function, its output sizes, its
  parameters (``init_params``, ``param_ndims``) and what the trainer reads (``label_inputs``);
- the SimpleNN layer type: the field defaults ``vl_simplenn_tidy`` fills, the fields that are
  block options (checked with the block's own ``cnnx._options`` rules), the structure check, the
  forward and backward adapters, the display geometry, the weights' full dimensions for model
  files;
- how a SimpleNN layer converts to the DagNN block (``to_dagnn``).

Each module registers its kind in :mod:`cnnx.layers.registry`, which ``vl_simplenn``,
``DagNN``, ``DagNN.from_simplenn``, ``load_matconvnet`` / ``save_matconvnet`` consult. The graphs
only order the calls and sum derivatives. Shared pieces (the :class:`Layer` base class, property
conversions) are in :mod:`cnnx.layers.base`.

Examples
--------
>>> from cnnx.layers import LAYER_TYPES, Conv
>>> LAYER_TYPES['conv'].block is Conv
True
"""
from .base import ElementWise, Layer
from .registry import BLOCK_TYPES, LAYER_TYPES, Conversion, LayerType, register_block, register_layer_type
from .conv import Conv
from .convt import ConvTranspose
from .pool import Pooling
from .relu import ReLU
from .prelu import PReLU
from .activations import ELU, GELU, SELU, ClippedReLU, SiLU, Softplus, Tanh
from .dropout import DropOut
from .bnorm import BatchNorm
from .loss import Loss
from .pdist import PDist
from .concat import Concat
from .sum import Sum
from .crop import Crop
from .scale import Scale
from .bilinearsampler import BilinearSampler
from .gridgenerators import AffineGridGenerator, UniformScalingGridGenerator
from .softmax import SoftMax
from .sigmoid import Sigmoid
from .roipool import ROIPooling
from .lrn import LRN
from .noffset import NormOffset
from .spnorm import SpatialNorm
from . import custom  # noqa: F401  (registers SimpleNN's 'custom' type; it has no DagNN block)

__all__ = [
    "AffineGridGenerator", "BLOCK_TYPES", "BatchNorm", "BilinearSampler", "ClippedReLU", "Concat", "Conv",
    "ConvTranspose", "Conversion", "Crop", "DropOut", "ELU", "ElementWise", "GELU", "LAYER_TYPES", "LRN", "Layer",
    "LayerType", "Loss", "NormOffset", "PDist", "PReLU", "Pooling", "ROIPooling", "ReLU", "SELU", "Scale", "Sigmoid",
    "SiLU", "SoftMax", "Softplus", "SpatialNorm", "Sum", "Tanh", "UniformScalingGridGenerator", "register_block",
    "register_layer_type",
]
