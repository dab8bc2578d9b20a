"""What each MPI rank runs in tests/test_distributed.py (``mpiexec -n 2 python mpi_worker.py MODE ...``).

It also holds the problem both sides train, so the single-process reference in the test is the
same network, data and options. Not a test file: pytest does not collect it.
"""
import os
import sys
import time

import numpy as np

from cnnx.train import cnn_train

# 8-image batches with a last batch of 5 of a 45-image epoch: shares of 4 + 4 and 3 + 2 images.
OPTIONS = dict(batch_size=8, learning_rate=[0.05, 0.05, 0.02], weight_decay=1e-3, num_epochs=3,
               train=np.arange(45), val=np.arange(45, 56), progress=False, plot_statistics=False)


def problem(network_type, random=True, bnorm=False):
    """(net, imdb, get_batch): conv - relu - dropout - conv - softmaxloss on 6x5x3 images, 3 classes.

    ``random=False``: no dropout and no flips, for a comparison with other sub-batches (which draw
    other masks and flips). ``bnorm=True``: a bnorm layer after the first conv (its moments learned
    at the rate 0.1)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5, 3, 56), dtype=np.float32)
    y = 1.0 + (x[0, 0, 0] > 0) + (x[2, 2, 2] > 0.5)
    imdb = {"x": x, "y": y.astype(np.float32)}
    net = {"layers": [
        {"type": "conv", "weights": [0.2 * rng.standard_normal((3, 3, 3, 4), dtype=np.float32),
                                     np.zeros(4, np.float32)], "pad": 1},
        {"type": "relu"},
        {"type": "dropout", "rate": 0.3 if random else 0.0},
        {"type": "conv", "weights": [0.2 * rng.standard_normal((6, 5, 4, 3), dtype=np.float32),
                                     np.zeros(3, np.float32)]},
        {"type": "softmaxloss"},
    ]}
    if bnorm:
        gains, biases = np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32)
        net["layers"].insert(1, {"type": "bnorm", "weights": [gains, biases],
                                 "learningRate": np.array([1.0, 1.0, 0.1])})

    def get_batch(imdb, batch):  # a random flip from np.random, as cifar10.get_batch
        images = imdb["x"][..., batch]
        return (images[:, ::-1] if random and np.random.random() > 0.5 else images), imdb["y"][batch]

    if network_type == "simplenn":
        return net, imdb, get_batch
    from cnnx import dagnn

    dag = dagnn.DagNN.from_simplenn(net, canonical_names=True)
    dag.add_layer("top1err", dagnn.Loss(loss="classerror"), ["prediction", "label"], "top1err")
    return dag, imdb, lambda db, b: dict(zip(("input", "label"), get_batch(db, b)))


def weights_of(net):
    """Every parameter of a SimpleNN dict or a DagNN, flattened, in order."""
    if isinstance(net, dict):
        return [np.ravel(w) for layer in net["layers"] for w in layer.get("weights") or []]
    return [np.ravel(p.value) for p in net.params]


def main(mode, folder):
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    if mode in ("simplenn", "dagnn"):
        # 2 epochs, then a resumed run to 3; every rank has its own folder, so rank 1 can only
        # resume from what rank 0 sends it.
        exp_dir = os.path.join(folder, f"rank{rank}")
        net, imdb, get_batch = problem(mode)
        cnn_train(net, imdb, get_batch, exp_dir=exp_dir, **{**OPTIONS, "num_epochs": 2})
        net, imdb, get_batch = problem(mode)
        trained, stats = cnn_train(net, imdb, get_batch, exp_dir=exp_dir, **OPTIONS)
        np.savez(os.path.join(folder, f"{mode}-rank{rank}.npz"), *weights_of(trained),
                 objective=[s["objective"] for s in stats["train"]], num=[s["num"] for s in stats["train"]])
        net, imdb, get_batch = problem(mode, random=False)
        trained, _ = cnn_train(net, imdb, get_batch, exp_dir=None, **OPTIONS)
        np.savez(os.path.join(folder, f"{mode}-plain-rank{rank}.npz"), *weights_of(trained))
        return 0
    if mode.startswith("bnorm-"):  # 'bnorm-simplenn', 'bnorm-dagnn': the moments over the ranks
        net, imdb, get_batch = problem(mode.removeprefix("bnorm-"), bnorm=True)
        trained, _ = cnn_train(net, imdb, get_batch, exp_dir=None, **OPTIONS)
        np.savez(os.path.join(folder, f"{mode}-rank{rank}.npz"), *weights_of(trained))
        return 0
    net, imdb, get_batch = problem("simplenn")
    options = dict(OPTIONS, exp_dir=None, comm_timeout=3)
    if mode == "report":  # progress on: rank 0 says what a step exchanges
        options.update(progress=True, num_epochs=1)
    if mode == "mismatch":  # rank 1 asks for another batch size
        options["batch_size"] += rank
    elif mode == "hang":  # rank 1 hangs in its second batch (mpiexec ends it once rank 0 stops)
        calls = []

        def get_batch(imdb, batch, inner=get_batch):
            calls.append(batch)
            if rank == 1 and len(calls) == 2:
                time.sleep(60)
            return inner(imdb, batch)
    try:
        cnn_train(net, imdb, get_batch, **options)
    except ValueError as err:
        print(f"rank {rank}: {type(err).__name__}: {err}", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
