"""Train MatConvNet's CIFAR-10 networks with cnnx: the Python version of ``cnn_cifar.m``.

Examples (from a checkout with cnnx installed)::

    python examples/cifar10.py                        # lenet, SimpleNN, 45 epochs, resumes
    python examples/cifar10.py --model nin --network dagnn
    python examples/cifar10.py --subset 2000 --epochs 2   # a quick run on 2000 + 400 images

The first run downloads CIFAR-10 (163 MiB) into --data-dir, preprocesses all 60,000 images (even
with --subset; about a minute) and caches them there (about 740 MB per preprocessing variant).
Training resumes from the last ``net-epoch-N.mat`` in --exp-dir unless --restart is given.
"""
import argparse
import os
import sys
import time

import numpy as np

import cnnx
from cnnx.datasets import cifar10
from cnnx.models import cifar_dagnn, cifar_lenet, cifar_nin
from cnnx.train import cnn_train

MODELS = {"lenet": cifar_lenet, "nin": cifar_nin}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Train MatConvNet's CIFAR-10 lenet or NIN network with cnnx (cnn_cifar).")
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet",
                        help="network: Caffe's CIFAR10-quick (lenet) or Network in Network (nin)")
    parser.add_argument("--network", choices=["simplenn", "dagnn"], default="simplenn",
                        help="wrapper to train the network with")
    parser.add_argument("--data-dir", default=os.path.join("data", "cifar"),
                        help="folder of cifar-10-python.tar.gz and the cached imdb "
                             "(default: data/cifar)")
    parser.add_argument("--exp-dir", default=None,
                        help="folder of the checkpoints, stats.json and plot "
                             "(default: data/cifar-MODEL-NETWORK, as MatConvNet's)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="number of epochs (default: the model's schedule, 45 or 103)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: the model's, 100)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="one learning rate for every epoch instead of the model's schedule")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default: CNNX_NUM_THREADS or all cores)")
    parser.add_argument("--no-whiten", dest="whiten", action="store_false",
                        help="skip ZCA whitening")
    parser.add_argument("--no-contrast-normalization", dest="contrast_normalization",
                        action="store_false", help="skip contrast normalisation")
    parser.add_argument("--restart", action="store_true",
                        help="start from epoch 1 instead of resuming from the last checkpoint "
                             "(the earlier run's checkpoints are deleted when the first new one is saved)")
    parser.add_argument("--subset", type=int, default=None, metavar="N",
                        help="train on the first N training images and validate on the first "
                             "N/5 test images (a quick run)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the weight initialisation (default: 0)")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "threads", "subset"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.exp_dir is None:
        args.exp_dir = os.path.join("data", f"cifar-{args.model}-{args.network}")
    return args


def dag_batch(imdb, batch):
    """The DagNN batch function: the same images and flips, as named network inputs."""
    images, labels = cifar10.get_batch(imdb, batch)
    return {"input": images, "label": labels}


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        cnnx.set_num_threads(args.threads)

    try:
        imdb = cifar10.get_imdb(args.data_dir, whiten=args.whiten,
                                contrast_normalization=args.contrast_normalization)
    except (RuntimeError, OSError) as error:  # offline, a bad download, a full disk: says what to do
        print(error, file=sys.stderr)
        return 1
    sets = imdb["images"]["set"]
    train = np.flatnonzero(sets == 1)
    val = np.flatnonzero(sets == 3)  # MatConvNet validates on the test set
    if args.subset is not None:
        train, val = train[:args.subset], val[:max(1, args.subset // 5)]

    net = MODELS[args.model](rng=args.seed)
    net["meta"]["classes"] = {"name": list(imdb["meta"]["classes"])}
    schedule = net["meta"]["trainOpts"]
    get_batch = cifar10.get_batch
    if args.network == "dagnn":
        net = cifar_dagnn(net)
        get_batch = dag_batch

    learning_rate = schedule["learningRate"] if args.learning_rate is None else args.learning_rate
    print(f"cifar10: {args.model} ({args.network}), {len(train)} training and {len(val)} test "
          f"images, {cnnx.get_num_threads()} thread(s), experiment folder {args.exp_dir}")
    start = time.perf_counter()
    try:
        _, stats = cnn_train(
            net, imdb, get_batch,
            exp_dir=args.exp_dir,
            continue_=not args.restart,
            batch_size=args.batch_size or schedule["batchSize"],
            num_epochs=args.epochs or schedule["numEpochs"],
            learning_rate=learning_rate,
            weight_decay=schedule["weightDecay"],
            train=train,
            val=val,
        )
    except (ValueError, OSError, FloatingPointError) as error:
        # another network's checkpoints in --exp-dir, a full disk, a diverged run: the message
        # says which file and what to do; every complete checkpoint is still there
        print(error, file=sys.stderr)
        return 1
    last = stats["val"][-1]
    # SimpleNN reports top1err and top5err; the DagNN its 'error' output (classerror = top-1).
    top1 = last["top1err"] if "top1err" in last else last["error"]
    print(f"cifar10: test top-1 error after epoch {len(stats['val'])}: {top1:.4f} "
          f"(objective {last['objective']:.4f}; {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
