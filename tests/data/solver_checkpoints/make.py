"""Writes <solver>.mat into FOLDER (python make.py FOLDER): one epoch of each solver on a tiny problem.

The committed files were written by the cnn_train of their commit and are kept as they are: every
later cnn_train must resume from them and write their layout (tests/test_solvers.py checks both).
"""
import os
import shutil
import sys
import tempfile

import numpy as np

from cnnx import dagnn
from cnnx.train import cnn_train


def data():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 3, 40)).astype(np.float32)
    y = (1.0 + (x[0, 0, 0] > x[0, 0, 1])).astype(np.float32)
    w = 0.1 * rng.standard_normal((1, 1, 3, 2)).astype(np.float32)
    return x, y, w


def custom(w, state, g, opts, lr):
    """A callable solver with a dict state (tests/test_solvers.py's ``counting``)."""
    if isinstance(state, float):
        state = {"acc": np.zeros_like(w), "count": 0}
    acc = state["acc"] + g * g
    return w - lr * g / np.sqrt(acc + 1.0), {"acc": acc, "count": state["count"] + 1}


def main(out):
    x, y, w = data()
    for name in ["sgd", "adam", "adagrad", "adadelta", "rmsprop", "custom", "dagnn-sgd", "dagnn-adam"]:
        net = {"layers": [{"type": "conv", "weights": [w.copy(), np.zeros(2, np.float32)]}, {"type": "softmaxloss"}]}
        get_batch = lambda db, b: (db["x"][..., b], db["y"][b])  # noqa: E731
        if name.startswith("dagnn-"):
            net = dagnn.DagNN.from_simplenn(net, canonical_names=True)
            get_batch = lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]}  # noqa: E731
        solver = custom if name == "custom" else name.removeprefix("dagnn-")
        with tempfile.TemporaryDirectory() as folder:
            cnn_train(net, {"x": x, "y": y}, get_batch, train=np.arange(40), val=[], solver=solver, batch_size=10,
                      num_epochs=1, learning_rate=0.1, exp_dir=folder, progress=False, plot_statistics=False)
            shutil.copy(os.path.join(folder, "net-epoch-1.mat"), os.path.join(out, f"{name}.mat"))


if __name__ == "__main__":
    main(sys.argv[1])
