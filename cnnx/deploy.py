"""Trained networks as classifiers: MatConvNet's ``cnn_imagenet_deploy``, its image preprocessing, predict.

A network as ``cnn_train`` leaves it (a checkpoint with its loss layers, dropout, batch
normalisation and the solver's momentum) classifies new images without editing:
``scores = predict(net, images)``. :func:`cnn_imagenet_deploy` makes the network that does so,
once, for repeated use; :func:`load_image` and :func:`normalize_image` prepare image files as
MatConvNet's ImageNet demos do (``net.meta.normalization``).

Examples
--------
>>> import numpy as np
>>> from cnnx.deploy import cnn_imagenet_deploy
>>> net = {'layers': [{'type': 'conv', 'weights': [np.ones((1, 1, 2, 3), np.float32), np.zeros(3, np.float32)]},
...                   {'type': 'dropout'}, {'type': 'softmaxloss'}]}
>>> [layer['type'] for layer in cnn_imagenet_deploy(net)['layers']]
['conv', 'softmax']
"""
import copy

import numpy as np

from .dagnn import DagNN
from .layers.registry import BLOCK_TYPES, LAYER_TYPES
from .simplenn import vl_simplenn, vl_simplenn_tidy

__all__ = ["cnn_imagenet_deploy", "load_image", "normalize_image", "predict"]

_FNAME = "cnn_imagenet_deploy"


def cnn_imagenet_deploy(net):
    """A copy of a trained network that outputs class probabilities (MatConvNet's ``cnn_imagenet_deploy``).

    As MatConvNet's: the loss layers and the dropout layers are removed, every batch normalisation
    that follows a convolution is folded into that convolution's filters and biases (``a = g ./
    sigma``, filters times ``a``, biases times ``a`` plus ``b - mu .* a``), a softmax layer
    ``'prob'`` is appended, and SimpleNN layers lose their ``momentum`` field. Departures: the
    convolution's own biases are scaled by ``a`` too (MatConvNet adds ``b - mu .* a`` to them
    unscaled, which is right only for the zero biases its batch-normalised models have); every
    layer whose kind is a loss (any SimpleNN type registered with ``loss=True``, any DagNN block
    with label inputs) is removed, not only ``softmaxloss`` / ``dagnn.Loss``; a batch
    normalisation that no convolution precedes stays (it runs on its stored moments in test mode)
    instead of being an error; no softmax is appended after one that is already last; ``net``
    itself is not changed; a DagNN comes back in ``mode = 'test'``. MatConvNet's removal of the
    cuDNN workspace limit has nothing to do here: cnnx ignores the GPU options.

    Parameters
    ----------
    net : dict or cnnx.dagnn.DagNN
        A SimpleNN network ``{'layers': [...], 'meta': ...}`` or a DagNN, as trained or loaded.

    Returns
    -------
    dict or cnnx.dagnn.DagNN
        The deployed copy: its output (SimpleNN's last layer, DagNN's variable ``'prob'``) holds
        the class probabilities, (H', W', K, N) for K classes.

    Raises
    ------
    TypeError
        If ``net`` is neither.
    ValueError
        If a DagNN without a loss layer has several outputs (which one is the prediction is then
        unknown), or the SimpleNN network is malformed (as :func:`cnnx.vl_simplenn_tidy` says).

    Examples
    --------
    >>> import numpy as np
    >>> net = {'layers': [{'type': 'conv', 'weights': [np.ones((1, 1, 1, 2), np.float32), np.zeros(2, np.float32)]},
    ...                   {'type': 'bnorm', 'weights': [np.full(2, 2, np.float32), np.zeros(2, np.float32),
    ...                                                 np.array([[1, 1], [0, 4]], np.float32)]},
    ...                   {'type': 'softmaxloss'}]}
    >>> deployed = cnn_imagenet_deploy(net)
    >>> deployed['layers'][0]['weights'][0].ravel(), deployed['layers'][0]['weights'][1]
    (array([2. , 0.5], dtype=float32), array([-2.,  0.], dtype=float32))
    """
    if isinstance(net, DagNN):
        return _deploy_dagnn(net)
    if isinstance(net, dict):
        return _deploy_simplenn(net)
    raise TypeError(f"{_FNAME}: net must be a SimpleNN dict or a cnnx.dagnn.DagNN, got {type(net).__name__}")


def _merged_bnorm(filters, biases, gains, offsets, moments):
    """Filters and biases of a convolution followed by a batch normalisation in test mode."""
    mu, sigma = (np.asarray(m, dtype=np.float64) for m in np.asarray(moments).reshape(-1, 2, order="F").T)
    a = np.asarray(gains, dtype=np.float64).ravel() / sigma
    b = np.asarray(offsets, dtype=np.float64).ravel() - mu * a
    filters = np.asarray(filters)
    channels = filters.shape[3] if filters.ndim == 4 else 1
    bias = np.zeros(channels) if biases is None or np.size(biases) == 0 else np.asarray(biases, np.float64).ravel()
    return ((filters * a.reshape(1, 1, 1, -1)).astype(filters.dtype),
            (bias * a + b).astype(filters.dtype).reshape(-1, order="F"))


def _deploy_simplenn(net):
    net = vl_simplenn_tidy(copy.deepcopy(net))
    layers = []
    for layer in net["layers"]:
        kind = LAYER_TYPES[layer["type"]]
        if kind.loss or layer["type"] == "dropout":
            continue
        if layer["type"] == "bnorm" and layers and layers[-1]["type"] == "conv":
            conv = layers[-1]
            biases = conv["weights"][1] if len(conv["weights"]) > 1 else None
            conv["weights"] = list(_merged_bnorm(conv["weights"][0], biases, *layer["weights"]))
            continue
        layer.pop("momentum", None)
        layers.append(layer)
    if not layers or layers[-1]["type"] != "softmax":
        layers.append({"name": "prob", "type": "softmax"})
    net["layers"] = layers
    return vl_simplenn_tidy(net)


def _deploy_dagnn(net):
    net = net.copy()
    losses = [layer for layer in net.layers if layer.block.label_inputs]
    prediction = losses[0].inputs[0] if losses else None
    if losses:
        net.remove_layer([layer.name for layer in losses])
    for layer in [layer for layer in net.layers if layer.block.type_name == "dagnn.DropOut"]:
        _bypass(net, layer)
    for layer in [layer for layer in net.layers if layer.block.type_name == "dagnn.BatchNorm"]:
        producers = [other for other in net.layers if layer.inputs[0] in other.outputs]
        if producers and producers[0].block.type_name == "dagnn.Conv":
            _merge_into_conv(net, producers[0], layer)
    if prediction not in {var.name for var in net.vars}:
        outputs = net.get_outputs()
        if len(outputs) != 1:
            raise ValueError(f"{_FNAME}: the DagNN has no loss layer and {len(outputs)} outputs "
                             f"({', '.join(outputs)}): which one is the prediction is unknown")
        prediction = outputs[0]
    producer = [layer for layer in net.layers if prediction in layer.outputs]
    if not (producer and producer[0].block.type_name == "dagnn.SoftMax"):
        net.add_layer("prob", BLOCK_TYPES["dagnn.SoftMax"](), [prediction], ["prob"])
    net.mode = "test"
    return net


def _bypass(net, layer):
    """Remove a one-input, one-output layer whose output equals its input in test mode."""
    source, target = layer.inputs[0], layer.outputs[0]
    net.remove_layer(layer.name)
    for other in net.layers:
        if target in other.inputs:
            net.set_layer_inputs(other.name, [source if v == target else v for v in other.inputs])


def _merge_into_conv(net, conv, bnorm):
    params = [net.get_param(name) for name in bnorm.params]
    if not conv.block.has_bias:
        bias_name = f"{conv.name}_b"
        net.set_layer_params(conv.name, [conv.params[0], bias_name])
        conv.block.has_bias = True
    filters, biases = (net.get_param(name) for name in conv.params[:2])
    filters.value, biases.value = _merged_bnorm(filters.value, biases.value, *(p.value for p in params))
    _bypass(net, bnorm)


def _is_deployed(net):
    """Whether ``net`` already ends in a softmax and has no loss layer (predict then uses it as it is)."""
    if isinstance(net, DagNN):
        return "prob" in {var.name for var in net.vars} and not any(layer.block.label_inputs for layer in net.layers)
    layers = net.get("layers") if isinstance(net, dict) else None
    return bool(layers) and layers[-1].get("type") == "softmax" and not any(
        LAYER_TYPES[layer["type"]].loss for layer in layers if layer.get("type") in LAYER_TYPES)


def predict(net, images):
    """Class probabilities of images through a trained network, its loss layers and all.

    Runs :func:`cnn_imagenet_deploy`'s copy of ``net`` (or ``net`` itself when it is already
    deployed: it ends in a softmax and has no loss layer) in test mode.

    Parameters
    ----------
    net : dict or cnnx.dagnn.DagNN
        A SimpleNN network or a DagNN (with one input besides its labels).
    images : ndarray, shape (H, W, C, N) or (H, W, C)
        Preprocessed as the network was trained (see :func:`normalize_image`).

    Returns
    -------
    ndarray, shape (H', W', K, N)
        The softmax output: for a classifier, (1, 1, K, N) probabilities of the K classes.

    Raises
    ------
    ValueError
        If a DagNN has no single image input, or as :func:`cnnx.vl_simplenn` / ``DagNN.eval``
        for images that do not fit the network.

    Examples
    --------
    >>> import numpy as np
    >>> net = {'layers': [{'type': 'conv', 'weights': [np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2),
    ...                                                np.zeros(2, np.float32)]}, {'type': 'softmaxloss'}]}
    >>> predict(net, np.array([0, np.log(3)], np.float32).reshape(1, 1, 2, 1)).ravel()
    array([0.25, 0.75], dtype=float32)
    """
    deployed = net if _is_deployed(net) else cnn_imagenet_deploy(net)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if isinstance(deployed, dict):
        return vl_simplenn(deployed, images, mode="test")[-1]["x"]
    labels = set(deployed.get_label_inputs())
    inputs = [name for name in deployed.get_inputs() if name not in labels]
    if len(inputs) != 1:
        raise ValueError(f"predict: the DagNN must have one image input, it has {len(inputs)} "
                         f"({', '.join(inputs) or 'none'})")
    deployed.mode = "test"
    deployed.eval({inputs[0]: images})
    return deployed.get_var("prob").value


def load_image(path, channels=3):
    """An image file as MATLAB's ``single(imread(path))``: (H, W, C) float32 on the 0..255 scale.

    Needs Pillow (the ``images`` extra: ``pip install 'cnnx[images]'``).

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow reads (PNG, JPEG, ...).
    channels : {3, 1}
        3 converts to RGB, 1 to grey levels (as MNIST networks take).

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), 'dot.png')
    >>> Image.new('RGB', (4, 2), (255, 0, 10)).save(path)
    >>> image = load_image(path)
    >>> image.shape, image[0, 0]
    ((2, 4, 3), array([255.,   0.,  10.], dtype=float32))
    """
    if channels not in (1, 3):
        raise ValueError(f"load_image: channels must be 1 or 3, got {channels!r}")
    image = _pillow().Image
    with image.open(path) as opened:
        pixels = np.asarray(opened.convert("RGB" if channels == 3 else "L"), dtype=np.float32)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def _pillow():
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        raise ImportError("cnnx.deploy: reading and resizing images needs Pillow: pip install 'cnnx[images]' "
                          "(or pip install Pillow)") from None
    import PIL

    return PIL


def normalize_image(image, meta):
    """MatConvNet's preprocessing for a network's ``meta.normalization``: resize, subtract the average.

    As MatConvNet's ImageNet demos: ``im = imresize(single(im), imageSize(1:2))``, then ``im -
    averageImage`` (a whole image, or one value per channel). Resizing is bicubic with
    antialiasing, as MATLAB's ``imresize`` default, through Pillow (the ``images`` extra); an
    image of the right size is not resized, so Pillow is not needed for it.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        On the scale the network was trained on (``load_image`` gives 0..255).
    meta : dict
        The network's ``meta`` with ``normalization.imageSize`` (``[H W C ...]``) and optionally
        ``normalization.averageImage`` (H x W x C, or C values).

    Returns
    -------
    ndarray of float32, shape (imageSize[0], imageSize[1], C)

    Raises
    ------
    ValueError
        If ``meta`` has no ``normalization.imageSize``, or the channels disagree.

    Examples
    --------
    >>> import numpy as np
    >>> meta = {'normalization': {'imageSize': [2, 2, 1], 'averageImage': [10.0]}}
    >>> normalize_image(np.full((2, 2, 1), 12.0), meta)[..., 0]
    array([[2., 2.],
           [2., 2.]], dtype=float32)
    """
    normalization = (meta or {}).get("normalization") if isinstance(meta, dict) else None
    if not isinstance(normalization, dict) or normalization.get("imageSize") is None:
        raise ValueError("normalize_image: meta must have normalization.imageSize (MatConvNet's net.meta)")
    size = [int(d) for d in np.ravel(normalization["imageSize"])]
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    channels = size[2] if len(size) > 2 else image.shape[2]
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"normalize_image: the network takes {channels}-channel images, got shape {image.shape}")
    if image.shape[:2] != tuple(size[:2]):
        pil = _pillow().Image
        image = np.stack([np.asarray(pil.fromarray(image[:, :, c], mode="F").resize(
            (size[1], size[0]), pil.Resampling.BICUBIC)) for c in range(channels)], axis=2)
    average = normalization.get("averageImage")
    if average is not None and np.size(average) > 0:
        average = np.asarray(average, dtype=np.float32)
        average = average.reshape(1, 1, -1) if average.size == channels else average.reshape(image.shape, order="F")
        image = image - average
    return np.asfortranarray(image, dtype=np.float32)
