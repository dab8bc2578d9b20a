"""The elementwise activation layer kinds beyond MatConvNet: ELU, SELU, softplus, tanh, SiLU, GELU
and clipped ReLU (SimpleNN's ``'elu'``, ``'selu'``, ``'softplus'``, ``'tanh'``, ``'silu'``,
``'gelu'``, ``'clippedrelu'``; DagNN's ``dagnn.ELU``, ``dagnn.SELU``, ...).

Why one module for seven kinds: they differ in their block function and its options and in nothing
else. Each runs ``y = f(x, **options)`` forward and ``dzdx = f(x, dzdy, **options)`` backward, has
no parameters, keeps the input's size, and its options are at once the DagNN block's properties
and the SimpleNN layer's fields (with the block function's defaults and ``cnnx._options`` rules:
``vl_simplenn_tidy`` and the model files check and read them by those). So the shared part is
written once (:class:`Activation`, :func:`register_activation`) and each kind is a short class
naming its function and converting its properties. ReLU keeps its own module: it has MatConvNet's
``leak`` rules, ``opts`` and the short-circuit backward from the output, which these do not.

Examples
--------
>>> from cnnx.layers import LAYER_TYPES
>>> from cnnx.layers.activations import ELU
>>> LAYER_TYPES['elu'].block is ELU, LAYER_TYPES['elu'].defaults
(True, {'alpha': 1.0})
"""
from functools import partial

from ..activations import (CLIPPED_RELU_OPTIONS, ELU_OPTIONS, GELU_OPTIONS, vl_nnclippedrelu, vl_nnelu,
                           vl_nngelu, vl_nnselu, vl_nnsilu, vl_nnsoftplus, vl_nntanh)
from .base import ElementWise, Property, choice, real
from .registry import Conversion, register_layer_type

__all__ = ["ELU", "GELU", "SELU", "Activation", "ClippedReLU", "SiLU", "Softplus", "Tanh", "register_activation"]


class Activation(ElementWise):
    """Base class of the elementwise activation blocks: ``function`` of the input, forward and backward.

    A subclass sets ``type_name``, ``function`` (the block function, as a ``staticmethod``) and
    ``function_options`` (its ``{name: cnnx._options.Option}``); each option is a property of the
    block, saved under its name and passed to ``function`` by keyword.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.layers.activations import Tanh
    >>> dzdx, = Tanh().backward([np.zeros(2)], [], [np.ones(2)])[0]
    >>> dzdx.tolist()
    [1.0, 1.0]
    """

    function = None
    function_options = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.saved_properties = tuple(cls.function_options)

    def options(self):
        """The block function's options: the block's properties."""
        return {name: getattr(self, name) for name in self.function_options}

    def forward(self, inputs, params):
        return [self.function(inputs[0], **self.options())]

    def backward(self, inputs, params, der_outputs):
        return [self.function(inputs[0], der_outputs[0], **self.options())], []


def register_activation(type_name, block):
    """Register SimpleNN's ``type_name`` layers, which run ``block``'s function with their option
    fields and convert to ``block``.

    Parameters
    ----------
    type_name : str
        The SimpleNN type (``layer['type']``).
    block : type
        An :class:`Activation` subclass; its ``function_options`` are the layer's fields, with their
        defaults.

    Returns
    -------
    cnnx.layers.LayerType
        The registered entry.

    Examples
    --------
    >>> from cnnx.layers.activations import GELU, register_activation
    >>> register_activation('gelu', GELU)
    Traceback (most recent call last):
    ...
    ValueError: register_layer_type: layer type 'gelu' is already registered (pass replace=True)
    """
    fields = tuple(block.function_options)

    def options_of(layer):
        return {field: layer[field] for field in fields}

    def forward(layer, res_i, res_ip1, ctx):
        res_ip1["x"] = block.function(res_i["x"], **options_of(layer))

    def backward(layer, res_i, res_ip1, ctx):
        res_i["dzdx"] = block.function(res_i["x"], res_ip1["dzdx"], **options_of(layer))

    return register_layer_type(
        type_name, forward, backward, defaults={field: block.function_options[field].default for field in fields},
        options=block.function_options, block=block, to_dagnn=lambda layer: Conversion(block(**options_of(layer))),
    )


# ------------------------------------------------------------------------------------------------
# The kinds
# ------------------------------------------------------------------------------------------------


class ELU(Activation):
    """ELU block (``vl_nnelu``): ``x`` where ``x > 0``, ``alpha * (exp(x) - 1)`` elsewhere.

    Parameters
    ----------
    alpha : float, default 1
        ``-alpha`` is the limit for x to -inf; any finite number.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import ELU
    >>> ELU(alpha=2.0).forward([np.array([[-np.inf, 3.0]])], [])[0]
    array([[-2.,  3.]])
    """

    type_name = "dagnn.ELU"
    function = staticmethod(vl_nnelu)
    function_options = ELU_OPTIONS

    def __init__(self, alpha=ELU_OPTIONS["alpha"].default):
        self.alpha = alpha

    alpha = Property(real, "Minus the limit for x to -inf.")


class SELU(Activation):
    """SELU block (``vl_nnselu``): ELU with SELU's fixed alpha, scaled by SELU's scale; no properties.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import SELU
    >>> SELU().forward([np.array([[1.0]])], [])[0]
    array([[1.05070099]])
    """

    type_name = "dagnn.SELU"
    function = staticmethod(vl_nnselu)


class Softplus(Activation):
    """Softplus block (``vl_nnsoftplus``): ``log(1 + exp(x))``; no properties.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Softplus
    >>> Softplus().forward([np.array([[0.0]])], [])[0]
    array([[0.69314718]])
    """

    type_name = "dagnn.Softplus"
    function = staticmethod(vl_nnsoftplus)


class Tanh(Activation):
    """Hyperbolic tangent block (``vl_nntanh``); no properties.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import Tanh
    >>> Tanh().forward([np.array([[1.0]])], [])[0]
    array([[0.76159416]])
    """

    type_name = "dagnn.Tanh"
    function = staticmethod(vl_nntanh)


class SiLU(Activation):
    """SiLU (swish) block (``vl_nnsilu``): ``x * sigmoid(x)``; no properties.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import SiLU
    >>> SiLU().forward([np.array([[1.0]])], [])[0]
    array([[0.73105858]])
    """

    type_name = "dagnn.SiLU"
    function = staticmethod(vl_nnsilu)


class GELU(Activation):
    """GELU block (``vl_nngelu``): ``x * Phi(x)``, exact or with the tanh approximation.

    Parameters
    ----------
    approximate : {'none', 'tanh'}, default 'none'
        ``'none'`` for the exact erf form, ``'tanh'`` for the tanh approximation.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import GELU
    >>> GELU(approximate='tanh').forward([np.array([[1.0]])], [])[0]
    array([[0.84119199]])
    """

    type_name = "dagnn.GELU"
    function = staticmethod(vl_nngelu)
    function_options = GELU_OPTIONS

    def __init__(self, approximate=GELU_OPTIONS["approximate"].default):
        self.approximate = approximate

    approximate = Property(partial(choice, choices=GELU_OPTIONS["approximate"].choices),
                           "'none' (the exact form) or 'tanh' (the tanh approximation).")


class ClippedReLU(Activation):
    """Clipped ReLU block (``vl_nnclippedrelu``): ``min(max(x, 0), ceiling)``, ReLU6 by default.

    Parameters
    ----------
    ceiling : float, default 6
        The largest output, at least 0 (inf for ReLU).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.dagnn import ClippedReLU
    >>> ClippedReLU(ceiling=1.0).forward([np.array([[-1.0, 0.5, 3.0]])], [])[0]
    array([[0. , 0.5, 1. ]])
    """

    type_name = "dagnn.ClippedReLU"
    function = staticmethod(vl_nnclippedrelu)
    function_options = CLIPPED_RELU_OPTIONS

    def __init__(self, ceiling=CLIPPED_RELU_OPTIONS["ceiling"].default):
        self.ceiling = ceiling

    ceiling = Property(partial(real, expected="a number of at least 0", accept=lambda ceiling: ceiling >= 0),
                       "The largest output.")


for _type_name, _block in (("elu", ELU), ("selu", SELU), ("softplus", Softplus), ("tanh", Tanh), ("silu", SiLU),
                           ("gelu", GELU), ("clippedrelu", ClippedReLU)):
    register_activation(_type_name, _block)
