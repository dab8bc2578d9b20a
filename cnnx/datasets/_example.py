"""What the example scripts (``examples/mnist.py``, ``examples/cifar10.py``) share: the checks of
their command line, --batch-norm, the image sets they train and validate on, the DagNN batch function and the
training run with its report, so that each script keeps only what is its own (data, model)."""
import sys
import time

import numpy as np

from .._threads import get_num_threads
from ..train import cnn_train


def add_run_args(parser):
    """The options of a training run every example has: --threads, --restart, --subset, --seed."""
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default: CNNX_NUM_THREADS or all cores)")
    parser.add_argument("--restart", action="store_true",
                        help="start from epoch 1 instead of resuming from the last checkpoint "
                             "(the earlier run's checkpoints are deleted when the first new one is saved)")
    parser.add_argument("--subset", type=int, default=None, metavar="N",
                        help="train on the first N training images and validate on the first "
                             "N/5 test images (a quick run)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the weight initialisation (default: 0)")


def add_batch_norm_arg(parser):
    """--batch-norm: the model with MatConvNet's batchNormalization option (``batch_normalization``)."""
    parser.add_argument("--batch-norm", action="store_true",
                        help="insert a batch normalisation layer after every convolution but the last "
                             "(MatConvNet's batchNormalization; the default folder gets '-bnorm')")


def batch_norm_suffix(args):
    """'-bnorm' with --batch-norm (MatConvNet's cnn_mnist folder suffix), else '': the two networks
    keep their checkpoints apart, so neither resumes the other."""
    return "-bnorm" if args.batch_norm else ""


def check_args(parser, args):
    """``parser.error`` for a count option below 1 or a learning rate that is not positive."""
    for name in ("epochs", "batch_size", "threads", "subset"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive, got {args.learning_rate}")


def image_sets(imdb, subset):
    """The training images (set 1) and MatConvNet's validation images (the test set, 3); with
    ``subset``, the first ``subset`` and ``subset // 5`` of them (a quick run)."""
    sets = imdb["images"]["set"]
    train, val = np.flatnonzero(sets == 1), np.flatnonzero(sets == 3)
    if subset is not None:
        train, val = train[:subset], val[:max(1, subset // 5)]
    return train, val


def dag_batches(get_batch):
    """The DagNN batch function of a SimpleNN one: the same images and labels as named inputs."""
    def dag_batch(imdb, batch):
        images, labels = get_batch(imdb, batch)
        return {"input": images, "label": labels}
    return dag_batch


def train(name, what, net, imdb, get_batch, args, exp_dir, train, val, **options):
    """Train with ``cnn_train`` and report (``what``: the model, the wrapper, the data): 0, or 1
    after printing why training stopped."""
    print(f"{name}: {what}, {len(train)} training and {len(val)} test images, "
          f"{get_num_threads()} thread(s), experiment folder {exp_dir}")
    start = time.perf_counter()
    try:
        _, stats = cnn_train(net, imdb, get_batch, exp_dir=exp_dir, continue_=not args.restart,
                             train=train, val=val, **options)
    except (ValueError, OSError, FloatingPointError) as error:
        # another network's checkpoints in --exp-dir, a full disk, a diverged run: the message
        # says which file and what to do; every complete checkpoint is still there
        print(error, file=sys.stderr)
        return 1
    last = stats["val"][-1]
    # SimpleNN reports top1err and top5err; the DagNN its 'error' output (classerror = top-1).
    top1 = last["top1err"] if "top1err" in last else last["error"]
    print(f"{name}: test top-1 error after epoch {len(stats['val'])}: {top1:.4f} "
          f"(objective {last['objective']:.4f}; {time.perf_counter() - start:.1f} s)")
    return 0
