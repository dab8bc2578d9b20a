"""MatConvNet's example models: CIFAR-10's "CIFAR10-quick" (lenet) and Network in Network (nin),
and MNIST's lenet.

Each builds a SimpleNN network: a dict with ``'layers'`` (a list of layer dicts with MatConvNet's
field names) and ``'meta'`` (``inputSize`` and the ``trainOpts`` the model was tuned with).
:func:`cifar_dagnn` and :func:`mnist_dagnn` turn them into DagNNs with an extra ``'error'``
output, as MatConvNet's ``networkType = 'dagnn'`` does.
"""
import numpy as np

from . import dagnn
from ._options import truth_value
from .simplenn import vl_simplenn_tidy


def _random_filters(rng, shape, std, dtype):
    # Filled in column-major order, as MATLAB's randn(shape) is.
    values = rng.standard_normal(int(np.prod(shape)), dtype=dtype) * dtype.type(std)
    return values.reshape(shape, order="F")


def _conv(rng, dtype, size, in_channels, out_channels, std, pad, learning_rate, bias_shape, name):
    layer = {
        "type": "conv",
        "weights": [
            _random_filters(rng, (size, size, in_channels, out_channels), std, dtype),
            np.zeros(bias_shape(out_channels), dtype=dtype),
        ],
        "learningRate": np.asarray(learning_rate, dtype=np.float64),
        "stride": 1,
        "pad": pad,
    }
    if name is not None:
        layer["name"] = name
    return layer


def _pool(method, pad, stride=2, size=3, name=None):
    layer = {"type": "pool", "method": method, "pool": [size, size], "stride": stride, "pad": pad}
    if name is not None:
        layer["name"] = name
    return layer


def _check_dtype(dtype, fname):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{fname}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _with_batch_norm(layers, batch_normalization, fname):
    """MatConvNet's cnn_mnist_init ``batchNormalization``: a bnorm layer after every convolution but
    the last, whose biases it replaces (the convolution's are removed): gains ones and biases zeros
    (C x 1, the filters' precision; tidy adds zero moments), ``learningRate = [1 1 0.05]``,
    ``weightDecay = [0 0]``; named ``<conv>_bn`` after a named convolution."""
    if not truth_value(fname, "batch_normalization", batch_normalization):
        return layers
    convolutions = [layer for layer in layers if layer["type"] == "conv"][:-1]
    out = []
    for layer in layers:
        out.append(layer)
        if any(layer is conv for conv in convolutions):
            filters = layer["weights"][0]
            layer["weights"][1] = None
            channels = filters.shape[3]
            bnorm = {"type": "bnorm",
                     "weights": [np.ones((channels, 1), filters.dtype), np.zeros((channels, 1), filters.dtype)],
                     "learningRate": np.array([1.0, 1.0, 0.05]), "weightDecay": np.array([0.0, 0.0])}
            if "name" in layer:
                bnorm["name"] = f"{layer['name']}_bn"
            out.append(bnorm)
    return out


def cifar_lenet(dtype=np.float32, rng=0, batch_normalization=False):
    """Build MatConvNet's CIFAR-10 "lenet" (Caffe's CIFAR10-quick), as ``cnn_cifar_init``.

    ``net = cifar_lenet()`` returns a tidied SimpleNN network for 32x32x3 images and 10 classes:
    three 5x5 convolution blocks (32, 32, 64 filters) with 3x3 stride-2 pooling padded
    ``[0 1 0 1]`` (Caffe's ceil-mode sizes), a 4x4 convolution to 64 channels, a 1x1 convolution to
    10 scores and a softmax loss. 145,578 parameters.

    Parameters
    ----------
    dtype : numpy dtype, default float32
        float32 (MatConvNet's ``single``) or float64.
    rng : int, None or numpy.random.Generator, default 0
        Seed or generator for the Gaussian filter initialisation (filter stds 0.01 for the first
        layer and 0.05 for the others; biases are zero, shaped ``(1, K)``).
    batch_normalization : bool, default False
        Insert a bnorm layer after each of the first four convolutions, which lose their biases,
        by the rule of MatConvNet's ``cnn_mnist_init`` (``learningRate = [1 1 0.05]``,
        ``weightDecay = [0 0]``; 17 layers, the same schedule). MatConvNet's ``cnn_cifar_init``
        has no such option: this is cnnx's.

    Returns
    -------
    net : dict
        ``net['layers']``: 13 layer dicts (unnamed layers are called ``layer1``...``layer13`` by
        :func:`~cnnx.simplenn.vl_simplenn_tidy`). Each convolution has ``learningRate`` multipliers
        ``[0.1, 2]`` (filters, biases), the last one ``[0.01, 0.2]``. ``net['meta']`` holds
        ``inputSize = [32, 32, 3]`` and ``trainOpts``: ``learningRate`` (0.05 for 30 epochs, 0.005
        for 10, 0.0005 for 5), ``weightDecay = 1e-4``, ``batchSize = 100``, ``numEpochs = 45``.

    Raises
    ------
    TypeError
        If ``dtype`` is not float32 or float64.

    Examples
    --------
    >>> from cnnx.models import cifar_lenet
    >>> net = cifar_lenet()
    >>> [layer["type"] for layer in net["layers"]][:3]
    ['conv', 'pool', 'relu']
    >>> net["meta"]["trainOpts"]["numEpochs"]
    45
    """
    dtype = _check_dtype(dtype, "cifar_lenet")
    rng = np.random.default_rng(rng)
    lr = np.array([0.1, 2.0])

    def conv(size, cin, cout, std, pad, learning_rate=lr):
        return _conv(rng, dtype, size, cin, cout, std, pad, learning_rate, lambda k: (1, k), None)

    layers = [
        conv(5, 3, 32, 0.01, 2),
        _pool("max", [0, 1, 0, 1]),
        {"type": "relu"},
        conv(5, 32, 32, 0.05, 2),
        {"type": "relu"},
        _pool("avg", [0, 1, 0, 1]),
        conv(5, 32, 64, 0.05, 2),
        {"type": "relu"},
        _pool("avg", [0, 1, 0, 1]),
        conv(4, 64, 64, 0.05, 0),
        {"type": "relu"},
        conv(1, 64, 10, 0.05, 0, learning_rate=0.1 * lr),
        {"type": "softmaxloss"},
    ]
    learning_rate = np.concatenate([np.full(30, 0.05), np.full(10, 0.005), np.full(5, 0.0005)])
    return _network(_with_batch_norm(layers, batch_normalization, "cifar_lenet"), learning_rate, weight_decay=1e-4)


def cifar_nin(dtype=np.float32, rng=0, batch_normalization=False):
    """Build MatConvNet's CIFAR-10 Network in Network (Lin et al. 2013), as ``cnn_cifar_init_nin``.

    ``net = cifar_nin()`` returns a tidied SimpleNN network for 32x32x3 images and 10 classes: three
    blocks of a spatial convolution (5x5, 5x5, 3x3 with 192 filters) followed by two 1x1 "cccp"
    convolutions, with ReLUs, max then average 3x3 stride-2 pooling and dropout 0.5 after the
    first two blocks, and a global 7x7 average pooling of the 10 class maps into a softmax loss.
    966,986 parameters.

    Parameters
    ----------
    dtype : numpy dtype, default float32
        float32 (MatConvNet's ``single``) or float64.
    rng : int, None or numpy.random.Generator, default 0
        Seed or generator for the He initialisation ``randn * sqrt(2 / (k * k * m))`` of a k x k
        filter bank over m channels; biases are zero, shaped ``(K, 1)``. The last convolution
        (``cccp6``) is scaled by 0.1 after initialisation.
    batch_normalization : bool, default False
        Insert a bnorm layer (``conv1_bn``, ``cccp1_bn``, ...) after every convolution but
        ``cccp6``, which lose their biases, by the rule of MatConvNet's ``cnn_mnist_init``
        (``learningRate = [1 1 0.05]``, ``weightDecay = [0 0]``; 31 layers, the same schedule).
        MatConvNet's ``cnn_cifar_init_nin`` has no such option: this is cnnx's.

    Returns
    -------
    net : dict
        ``net['layers']``: 23 named layer dicts (``conv1``, ``relu1``, ``cccp1``, ...,
        ``pool3``, and the loss). Convolutions have ``learningRate`` multipliers ``[1, 10]``
        except ``cccp6``, which has ``[0.001, 0.01]``; there is no ReLU after ``cccp6``.
        ``net['meta']`` holds ``inputSize = [32, 32, 3]`` and ``trainOpts``: ``learningRate``
        (0.002, 0.01, 0.02 warm-up, then 0.04 for 80 epochs, 0.004 for 10, 0.0004 for 10),
        ``weightDecay = 5e-4``, ``batchSize = 100``, ``numEpochs = 103``.

    Raises
    ------
    TypeError
        If ``dtype`` is not float32 or float64.

    Examples
    --------
    >>> from cnnx.models import cifar_nin
    >>> net = cifar_nin()
    >>> net["layers"][-2]["name"], net["layers"][-2]["pool"]
    ('pool3', [7, 7])
    """
    dtype = _check_dtype(dtype, "cifar_nin")
    rng = np.random.default_rng(rng)
    lr = np.array([1.0, 10.0])

    def conv(name, size, cin, cout, pad=0, learning_rate=lr):
        std = np.sqrt(2.0 / (size * size * cin))
        return _conv(rng, dtype, size, cin, cout, std, pad, learning_rate, lambda k: (k, 1), name)

    def relu(name):
        return {"type": "relu", "name": name}

    def dropout(name):
        return {"type": "dropout", "name": name, "rate": 0.5}

    layers = [
        conv("conv1", 5, 3, 192, pad=2), relu("relu1"),
        conv("cccp1", 1, 192, 160), relu("relu_cccp1"),
        conv("cccp2", 1, 160, 96), relu("relu_cccp2"),
        _pool("max", 0, name="pool1"), dropout("dropout1"),
        conv("conv2", 5, 96, 192, pad=2), relu("relu2"),
        conv("cccp3", 1, 192, 192), relu("relu_cccp3"),
        conv("cccp4", 1, 192, 192), relu("relu_cccp4"),
        _pool("avg", 0, name="pool2"), dropout("dropout2"),
        conv("conv3", 3, 192, 192, pad=1), relu("relu3"),
        conv("cccp5", 1, 192, 192), relu("relu_cccp5"),
    ]
    cccp6 = conv("cccp6", 1, 192, 10, learning_rate=0.001 * lr)
    cccp6["weights"][0] *= dtype.type(0.1)
    layers += [
        cccp6,
        _pool("avg", 0, stride=1, size=7, name="pool3"),
        {"type": "softmaxloss"},
    ]
    learning_rate = np.concatenate(
        [[0.002, 0.01, 0.02], np.full(80, 0.04), np.full(10, 0.004), np.full(10, 0.0004)]
    )
    return _network(_with_batch_norm(layers, batch_normalization, "cifar_nin"), learning_rate, weight_decay=5e-4)


def _network(layers, learning_rate, weight_decay):
    net = {
        "layers": layers,
        "meta": {
            "inputSize": [32, 32, 3],
            "trainOpts": {
                "learningRate": learning_rate,
                "weightDecay": weight_decay,
                "batchSize": 100,
                "numEpochs": len(learning_rate),
            },
        },
    }
    return vl_simplenn_tidy(net)


def _dagnn_with_error(net, layer_name):
    """from_simplenn with canonical names, plus a classerror layer ``layer_name`` whose output is 'error'."""
    dag = dagnn.DagNN.from_simplenn(net, canonical_names=True)
    dag.add_layer(layer_name, dagnn.Loss(loss="classerror"), ["prediction", "label"], "error")
    return dag


def cifar_dagnn(net):
    """Convert a CIFAR SimpleNN network to DagNN, adding a top-1 error output, as MatConvNet does.

    ``dag = cifar_dagnn(cifar_lenet())`` is ``DagNN.from_simplenn(net, canonical_names=True)``
    (input ``'input'``, scores ``'prediction'``, labels ``'label'``, loss ``'objective'``) plus a
    layer ``'error'``: ``dagnn.Loss(loss='classerror')`` on ``('prediction', 'label')`` with output
    ``'error'``.

    Parameters
    ----------
    net : dict
        A SimpleNN network ending in a ``softmaxloss`` layer, such as :func:`cifar_lenet` or
        :func:`cifar_nin` returns.

    Returns
    -------
    dag : cnnx.dagnn.DagNN
        The converted network, with copies of ``net``'s weights and ``meta``.

    Examples
    --------
    >>> from cnnx.models import cifar_dagnn, cifar_lenet
    >>> dag = cifar_dagnn(cifar_lenet())
    >>> dag.get_layer("error")
    DagLayer('error', Loss, inputs=['prediction', 'label'], outputs=['error'], params=[])
    >>> dag.get_outputs()
    ['objective', 'error']
    """
    return _dagnn_with_error(net, "error")


def mnist_lenet(dtype=np.float32, rng=0, batch_normalization=False):
    """Build MatConvNet's MNIST lenet, as ``cnn_mnist_init``.

    ``net = mnist_lenet()`` returns a tidied SimpleNN network for 28x28x1 images and 10 classes:
    a 5x5 convolution to 20 channels, 2x2 max pooling with stride 2, a 5x5 convolution to 50
    channels, 2x2 max pooling, a 4x4 convolution to 500 channels, a ReLU, a 1x1 convolution to
    10 scores and a softmax loss. 431,080 parameters.

    Parameters
    ----------
    dtype : numpy dtype, default float32
        float32 (MatConvNet's ``single``) or float64.
    rng : int, None or numpy.random.Generator, default 0
        Seed or generator for the filters, ``0.01 * randn`` (filled in MATLAB's column-major
        order; NumPy's generator, so not MATLAB's numbers); biases are zero, shaped ``(1, K)``.
    batch_normalization : bool, default False
        MatConvNet's ``batchNormalization`` (``cnn_mnist``'s default false): a bnorm layer after
        each of the first three convolutions, which lose their biases; its gains are ones, its
        biases zeros (C x 1), its moments zeros (C x 2), ``learningRate = [1 1 0.05]`` (the moments
        follow a running average at the rate 0.05) and ``weightDecay = [0 0]``. 11 layers, the
        same training options.

    Returns
    -------
    net : dict
        ``net['layers']``: 8 layer dicts (``layer1``...``layer8``), the convolutions with no
        ``learningRate`` or ``weightDecay`` fields (the trainer's defaults, ones, apply, as in
        MatConvNet).
        ``net['meta']`` holds ``inputSize = [28, 28, 1]`` and ``trainOpts``: ``learningRate =
        0.001``, ``numEpochs = 20``, ``batchSize = 100`` (the weight decay is the trainer's
        default, 0.0005).

    Raises
    ------
    TypeError
        If ``dtype`` is not float32 or float64.

    Examples
    --------
    >>> from cnnx.models import mnist_lenet
    >>> net = mnist_lenet()
    >>> [layer["type"] for layer in net["layers"]]
    ['conv', 'pool', 'conv', 'pool', 'conv', 'relu', 'conv', 'softmaxloss']
    >>> net["meta"]["trainOpts"]
    {'learningRate': 0.001, 'numEpochs': 20, 'batchSize': 100}
    >>> [layer["type"] for layer in mnist_lenet(batch_normalization=True)["layers"]][:4]
    ['conv', 'bnorm', 'pool', 'conv']
    """
    dtype = _check_dtype(dtype, "mnist_lenet")
    rng = np.random.default_rng(rng)

    def conv(size, cin, cout):
        return {
            "type": "conv",
            "weights": [_random_filters(rng, (size, size, cin, cout), 0.01, dtype),
                        np.zeros((1, cout), dtype=dtype)],
            "stride": 1,
            "pad": 0,
        }

    layers = [
        conv(5, 1, 20),
        _pool("max", 0, stride=2, size=2),
        conv(5, 20, 50),
        _pool("max", 0, stride=2, size=2),
        conv(4, 50, 500),
        {"type": "relu"},
        conv(1, 500, 10),
        {"type": "softmaxloss"},
    ]
    net = {
        "layers": _with_batch_norm(layers, batch_normalization, "mnist_lenet"),
        "meta": {
            "inputSize": [28, 28, 1],
            "trainOpts": {"learningRate": 0.001, "numEpochs": 20, "batchSize": 100},
        },
    }
    return vl_simplenn_tidy(net)


def mnist_dagnn(net):
    """Convert the MNIST SimpleNN network to DagNN with a top-1 error output, as ``cnn_mnist_init``.

    ``dag = mnist_dagnn(mnist_lenet())`` is ``DagNN.from_simplenn(net, canonical_names=True)``
    (input ``'input'``, scores ``'prediction'``, labels ``'label'``, loss ``'objective'``) plus
    MatConvNet's layer ``'top1err'``: ``dagnn.Loss(loss='classerror')`` on ``('prediction',
    'label')`` with output ``'error'``. MatConvNet also adds a ``'top5err'`` layer (loss
    ``'topkerror'``), which cnnx's ``vl_nnloss`` does not have yet.

    Parameters
    ----------
    net : dict
        A SimpleNN network ending in a ``softmaxloss`` layer, such as :func:`mnist_lenet` returns.

    Returns
    -------
    dag : cnnx.dagnn.DagNN
        The converted network, with copies of ``net``'s weights and ``meta``.

    Examples
    --------
    >>> from cnnx.models import mnist_dagnn, mnist_lenet
    >>> dag = mnist_dagnn(mnist_lenet())
    >>> dag.get_layer("top1err")
    DagLayer('top1err', Loss, inputs=['prediction', 'label'], outputs=['error'], params=[])
    >>> dag.get_outputs()
    ['objective', 'error']
    """
    return _dagnn_with_error(net, "top1err")
