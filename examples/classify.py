"""Classify image files with a MatConvNet model file: the top classes and their scores.

    python examples/classify.py MODEL.mat IMAGE [IMAGE ...] [--top 5] [--threads T]

MODEL.mat is a SimpleNN or DagNN network as MatConvNet's ImageNet models and cnn_train's
checkpoints store it (``net-epoch-20.mat`` of ``examples/mnist.py`` works too), with
``meta.normalization.imageSize`` (and ``averageImage``) saying how images are prepared and
``meta.classes.description`` (or ``name``) naming the classes. Loss and dropout layers are dropped
and batch normalisation folded as MatConvNet's ``cnn_imagenet_deploy`` does; each image is read,
resized and centred as MatConvNet's demos do (``cnnx.deploy``); its scores are the softmax output,
averaged over the positions when the network's output is larger than 1x1. Needs Pillow
(``pip install '.[images]'``).
"""
import argparse
import sys

import numpy as np

import cnnx
from cnnx.deploy import cnn_imagenet_deploy, load_image, normalize_image, predict


def class_names(meta, count):
    """The classes' descriptions from ``meta.classes``, else their numbers (1-based, as MatConvNet's)."""
    classes = meta.get("classes") or {}
    names = classes.get("description", classes.get("name")) if isinstance(classes, dict) else None
    names = [str(n) for n in np.ravel(np.asarray(names, dtype=object))] if names is not None else []
    return names if len(names) == count else [f"class {k + 1}" for k in range(count)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a MatConvNet .mat model file (SimpleNN or DagNN)")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: CNNX_NUM_THREADS or all)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    if args.threads is not None:
        cnnx.set_num_threads(args.threads)
    try:
        net = cnnx.load_matconvnet(args.model)
        meta = net["meta"] if isinstance(net, dict) else net.meta
        size = np.ravel((meta.get("normalization") or {}).get("imageSize", []))
        channels = int(size[2]) if size.size > 2 else 3
        deployed = cnn_imagenet_deploy(net)
        images = np.stack([normalize_image(load_image(path, channels), meta) for path in args.images], axis=3)
    except (ImportError, OSError, ValueError) as error:  # no Pillow, an unreadable file, a model without meta
        print(f"classify: {error}", file=sys.stderr)
        return 1
    scores = predict(deployed, images)
    scores = scores.reshape(-1, scores.shape[2], scores.shape[3]).mean(axis=0)  # (K, N)
    names = class_names(meta, scores.shape[0])
    for n, path in enumerate(args.images):
        print(f"{path}:")
        for k in np.argsort(-scores[:, n], kind="stable")[: args.top]:
            print(f"  {scores[k, n]:.4f}  {names[k]} ({k + 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
