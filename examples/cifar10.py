"""Train MatConvNet's CIFAR-10 networks with cnnx: the Python version of ``cnn_cifar.m``.

Examples (from a checkout with cnnx installed)::

    python examples/cifar10.py                        # lenet, SimpleNN, 45 epochs, resumes
    python examples/cifar10.py --model nin --network dagnn
    python examples/cifar10.py --subset 2000 --epochs 2   # a quick run on 2000 + 400 images
    python examples/cifar10.py --batch-norm               # bnorm after the convolutions (cnnx's option)

The first run downloads CIFAR-10 (163 MiB) into --data-dir, preprocesses all 60,000 images (even
with --subset; about a minute) and caches them there (about 740 MB per preprocessing variant).
Training resumes from the last ``net-epoch-N.mat`` in --exp-dir unless --restart is given.
"""
import argparse
import os
import sys

import cnnx
from cnnx.datasets import _example as example, cifar10
from cnnx.models import cifar_dagnn, cifar_lenet, cifar_nin

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
                             "(default: data/cifar-MODEL-NETWORK[-bnorm], as MatConvNet's)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="number of epochs (default: the model's schedule, 45 or 103)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: the model's, 100)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="one learning rate for every epoch instead of the model's schedule")
    parser.add_argument("--no-whiten", dest="whiten", action="store_false",
                        help="skip ZCA whitening")
    parser.add_argument("--no-contrast-normalization", dest="contrast_normalization",
                        action="store_false", help="skip contrast normalisation")
    example.add_batch_norm_arg(parser)
    example.add_run_args(parser)
    args = parser.parse_args(argv)
    example.check_args(parser, args)
    if args.exp_dir is None:
        args.exp_dir = os.path.join("data", f"cifar-{args.model}-{args.network}{example.batch_norm_suffix(args)}")
    return args


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
    train, val = example.image_sets(imdb, args.subset)

    net = MODELS[args.model](rng=args.seed, batch_normalization=args.batch_norm)
    net["meta"]["classes"] = {"name": list(imdb["meta"]["classes"])}
    schedule = net["meta"]["trainOpts"]
    get_batch = cifar10.get_batch
    if args.network == "dagnn":
        net = cifar_dagnn(net)
        get_batch = example.dag_batches(cifar10.get_batch)

    learning_rate = schedule["learningRate"] if args.learning_rate is None else args.learning_rate
    model = args.model + example.batch_norm_suffix(args)
    return example.train("cifar10", f"{model} ({args.network})", net, imdb, get_batch, args, args.exp_dir,
                         train, val,
                         batch_size=args.batch_size or schedule["batchSize"],
                         num_epochs=args.epochs or schedule["numEpochs"],
                         learning_rate=learning_rate, weight_decay=schedule["weightDecay"])


if __name__ == "__main__":
    sys.exit(main())
