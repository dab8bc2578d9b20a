"""Train MatConvNet's MNIST lenet with cnnx: the Python version of ``cnn_mnist.m``.

Examples (from a checkout with cnnx installed)::

    python examples/mnist.py                          # MNIST, or the shipped sample offline
    python examples/mnist.py --sample                 # the 5,000-digit sample on purpose
    python examples/mnist.py --network dagnn --epochs 5
    python examples/mnist.py --batch-norm             # cnn_mnist('batchNormalization', true)

The first run downloads MNIST's four files (11.6 MB) into --data-dir. When they cannot be had (no
network), it says so in one line and trains on the 5,000-digit MNIST sample that ships with cnnx
(4,000 training and 1,000 test digits) instead. Training resumes from the last ``net-epoch-N.mat``
in --exp-dir unless --restart is given; runs on the sample have their own default folder.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges (CC BY-SA 3.0).
"""
import argparse
import os
import sys

import cnnx
from cnnx.datasets import _example as example, mnist
from cnnx.models import mnist_dagnn, mnist_lenet

SAMPLE_NOTE = ("Training on the 5,000-digit MNIST sample that ships with cnnx instead "
               "(4,000 training, 1,000 test digits).")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Train MatConvNet's MNIST lenet with cnnx (cnn_mnist).")
    parser.add_argument("--network", choices=["simplenn", "dagnn"], default="simplenn",
                        help="wrapper to train the network with")
    parser.add_argument("--data-dir", default=os.path.join("data", "mnist"),
                        help="folder of the four MNIST files (default: data/mnist)")
    parser.add_argument("--sample", action="store_true",
                        help="train on the 5,000-digit sample that ships with cnnx, without "
                             "downloading MNIST")
    parser.add_argument("--exp-dir", default=None,
                        help="folder of the checkpoints, stats.json and plot (default: "
                             "data/mnist-lenet-NETWORK[-bnorm], with -sample on the sample)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="number of epochs (default: the model's, 20)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: the model's, 100)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="learning rate (default: the model's, 0.001)")
    example.add_batch_norm_arg(parser)
    example.add_run_args(parser)
    args = parser.parse_args(argv)
    example.check_args(parser, args)
    return args


def default_exp_dir(network, sample, suffix=""):
    """MatConvNet's data/<dataset>-<model>-<wrapper>[-bnorm] (``suffix``); the sample's runs are kept
    apart, so that a run on the full MNIST never resumes one trained on the sample."""
    return os.path.join("data", f"mnist-lenet-{network}{suffix}" + ("-sample" if sample else ""))


def get_imdb(args):
    """The imdb, and whether it is the sample: MNIST unless --sample or it cannot be had."""
    if args.sample:
        return mnist.get_imdb(sample=True), True
    try:
        return mnist.get_imdb(args.data_dir), False
    except RuntimeError as error:  # offline or a bad download: one line, then the sample
        print(f"{error}. {SAMPLE_NOTE}", file=sys.stderr)
        return mnist.get_imdb(sample=True), True


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        cnnx.set_num_threads(args.threads)

    try:
        imdb, sample = get_imdb(args)
    except (ValueError, OSError) as error:  # a damaged file, a full disk: says which file
        print(error, file=sys.stderr)
        return 1
    exp_dir = args.exp_dir or default_exp_dir(args.network, sample, example.batch_norm_suffix(args))
    train, val = example.image_sets(imdb, args.subset)

    net = mnist_lenet(rng=args.seed, batch_normalization=args.batch_norm)
    net["meta"]["classes"] = {"name": list(imdb["meta"]["classes"])}
    # What examples/classify.py needs to classify digit images with a checkpoint (MatConvNet's fields).
    net["meta"]["normalization"] = {"imageSize": [28, 28, 1], "averageImage": imdb["images"]["data_mean"]}
    opts = net["meta"]["trainOpts"]
    get_batch = mnist.get_batch
    if args.network == "dagnn":
        net = mnist_dagnn(net)
        get_batch = example.dag_batches(mnist.get_batch)

    data = "the shipped sample" if sample else "MNIST"
    model = "lenet" + example.batch_norm_suffix(args)
    return example.train("mnist", f"{model} ({args.network}) on {data}", net, imdb, get_batch, args, exp_dir,
                         train, val,
                         batch_size=args.batch_size or opts["batchSize"],
                         num_epochs=args.epochs or opts["numEpochs"],
                         learning_rate=args.learning_rate or opts["learningRate"])


if __name__ == "__main__":
    sys.exit(main())
