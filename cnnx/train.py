"""Training: MatConvNet's ``cnn_train`` (SimpleNN) and ``cnn_train_dag`` (DagNN) in one function.

:func:`cnn_train` runs epochs of stochastic gradient descent with momentum (or Adam, AdaGrad,
AdaDelta, RMSProp) over an image database, evaluates a validation set after each epoch, and saves
one checkpoint per epoch, from which an interrupted run resumes. It follows MatConvNet v1.0-beta25:
the loss layers sum over the batch and the update divides the gradient by the batch size.

Reproducibility: every random source is seeded from ``random_seed + e`` in epoch ``e``
(MatConvNet's ``rng(epoch + randomSeed)``): the shuffle of the training and validation sets at the
start of the epoch; and, before each sub-batch (each piece of a batch, see ``num_sub_batches``),
from the seed, the batch number and the piece's place in the batch, the generator the dropout
layers draw their masks from (a fresh ``numpy.random.Generator`` handed to ``vl_simplenn`` as its
``rng`` option, or set as the DagNN's ``rng``) and NumPy's global generator (``np.random.seed``),
for a ``get_batch`` that augments with ``np.random.*``. A run stopped after epoch 2 and resumed
therefore ends with exactly the weights of an uninterrupted one; the kernels give the same bits at
any thread count; and K MPI ranks draw what one process with ``num_sub_batches = K`` draws.

More than one machine: under ``mpiexec -n K`` (mpi4py, ``pip install 'cnnx[mpi]'``) the ``comm``
option makes K processes train one network together, each on every K-th image of every batch,
exchanging derivatives once per step; see :mod:`cnnx._distributed` for how, and ``comm`` below.

Files in ``exp_dir``:

- ``net-epoch-N.mat``: the network, the solver state (laid out by the solver object of
  :mod:`cnnx.solvers`) and the statistics after epoch N (MATLAB
  variables ``net``, ``state`` and ``stats``, as MatConvNet, plus the file's SHA-256 checksum, see
  :func:`cnnx.io.save_matconvnet`). Written to a temporary file in the same folder and renamed over
  the final name, so a crash never leaves a half-written checkpoint.
- ``stats.json``: every statistic of every epoch, ``{"train": [{"epoch": 1, "objective": ...}, ...],
  "val": [...]}``.
- ``net-train.png``: the train and validation curves, when matplotlib is installed.

Resuming (``continue_``) trusts only what cnn_train wrote:

- the temporary files of saves that a crash interrupted (``.net-epoch-N.mat.PID.XXXXXXXX.tmp``, the
  same for ``stats.json`` and ``net-train.png``) are deleted, and their number printed; those of a
  process still running are kept;
- only names cnn_train writes count (``net-epoch-3.mat``; ``net-epoch-03.mat`` is named and left
  alone). Starting from the highest epoch N, a checkpoint is used if its checksum matches, it can
  be read and its statistics cover exactly N epochs. One that fails is renamed to
  ``net-epoch-N.mat.rejected`` and the next older one is tried; what was skipped is printed;
- the checkpoint must hold the network asked for (the same wrapper, layer types and parameter
  shapes), else ValueError: a folder of another experiment is never trained on by mistake;
- ``stats.json`` and ``net-train.png`` are rewritten from the checkpoint's statistics, since a run
  may have died between saving the checkpoint and writing them.

Without ``continue_``, the checkpoints already in ``exp_dir`` belong to an earlier run: they are
deleted just before this run saves its first one (the newest first, so that a crash in between
leaves a shorter, whole earlier run), and a later resume cannot pick them up.

Examples
--------
Logistic regression on two Gaussian classes, as MatConvNet's solver test:

>>> import numpy as np
>>> from cnnx.train import cnn_train
>>> rng = np.random.default_rng(0)
>>> x = 2 * rng.standard_normal((5, 4, 3, 100), dtype=np.float32)
>>> x[..., 50:] += 2 * rng.standard_normal((5, 4, 3, 1), dtype=np.float32)
>>> imdb = {"x": x, "y": np.repeat([1.0, 2.0], 50).astype(np.float32),
...         "images": {"set": np.ones(100)}}
>>> net = {"layers": [
...     {"type": "conv", "weights": [np.zeros((5, 4, 3, 2), np.float32), np.zeros(2, np.float32)]},
...     {"type": "softmaxloss"}]}
>>> net, stats = cnn_train(net, imdb, lambda db, b: (db["x"][..., b], db["y"][b]),
...                        exp_dir=None, batch_size=10, learning_rate=0.01, num_epochs=2,
...                        progress=False)
>>> sorted(stats["train"][-1])
['num', 'objective', 'time', 'top1err', 'top5err']
>>> bool(stats["train"][1]["objective"] < stats["train"][0]["objective"] < np.log(2))
True
"""
import contextlib
import copy
import errno
import json
import math
import numbers
import os
import re
import sys
import time

import numpy as np

from . import solvers
from ._files import atomic_open, remove_stale_temporaries
from ._labels import batch_labels, parse_labels
from ._memory import StepMemory, keep_freed_memory
from ._options import Option, _key, integer, limit, parse_options, real_number, truth_value
from ._threads import get_num_threads
from .layers.registry import LAYER_TYPES

__all__ = ["cnn_train"]

_FNAME = "cnn_train"

# Every option and its default (see cnn_train's docstring); _parse validates them.
_DEFAULTS = {
    "exp_dir": os.path.join("data", "exp"),
    "continue_": True,
    "batch_size": 256,
    "num_sub_batches": 1,
    "train": None,
    "val": None,
    "epoch_size": math.inf,
    "prefetch": False,
    "num_epochs": None,
    "learning_rate": 0.001,
    "weight_decay": 0.0005,
    "momentum": 0.9,
    "nesterov": False,
    "solver": None,
    "solver_opts": None,
    "save_solver_state": True,
    "random_seed": 0,
    "conserve_memory": True,
    "plan_memory": True,
    "back_prop_depth": math.inf,
    "error_function": None,
    "error_labels": None,
    "der_outputs": None,
    "post_epoch_fn": None,
    "plot_statistics": True,
    "progress": True,
    "check_finite": True,
    "comm": "auto",
    "comm_timeout": 600.0,
}
_OPTIONS = {name: Option("any", default, display=name) for name, default in _DEFAULTS.items()}

# Other spellings accepted for an option (MatConvNet's name, or a Python keyword-friendly one).
_ALIASES = {"resume": "continue_", "nesterovupdate": "nesterov"}

# The files cnn_train writes in exp_dir; only names it writes count when resuming.
_CHECKPOINT = re.compile(r"net-epoch-([1-9][0-9]*)\.mat")
_WRITTEN = re.compile(r"net-epoch-[1-9][0-9]*\.mat|stats\.json|net-train\.png")
_LOOKS_LIKE_CHECKPOINT = re.compile(r"\.?net-epoch-.*\.(mat|tmp)")


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


def _rename_aliases(args, kwargs):
    """Map alias option names (``resume``, ``nesterovUpdate``) to their canonical spelling."""
    args = list(args)
    for i in range(0, len(args), 2):
        if isinstance(args[i], str) and _key(args[i]) in _ALIASES:
            args[i] = _ALIASES[_key(args[i])]
    renamed = {}
    for name, value in kwargs.items():
        canonical = _ALIASES.get(_key(name), name)
        if canonical in renamed:
            raise TypeError(f"{_FNAME}: option '{canonical}' is given twice (as '{name}' too)")
        renamed[canonical] = value
    return args, renamed


def _learning_rates(value):
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"{_FNAME}: learning_rate must be a number or a sequence of numbers, got {value!r}")
    rates = arr.astype(np.float64).reshape(-1)
    if rates.size == 0:
        raise ValueError(f"{_FNAME}: learning_rate is empty")
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"{_FNAME}: learning_rate must be non-negative and finite, got {value!r}")
    return [float(r) for r in rates]


def _indices(name, value, num_images):
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros(0, dtype=np.intp)
    if arr.dtype.kind == "b":
        raise TypeError(f"{_FNAME}: {name} must hold image indices, not booleans (use np.flatnonzero)")
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "f" and not np.all(arr == np.trunc(arr)):
        raise TypeError(f"{_FNAME}: {name} must hold integer image indices, got {arr.dtype}")
    arr = arr.astype(np.intp).reshape(-1)
    if arr.min() < 0 or num_images is not None and arr.max() >= num_images:
        bound = f" and below {num_images} (imdb['images']['set'] has {num_images} images)" if num_images else ""
        raise ValueError(f"{_FNAME}: {name} indices must be at least 0{bound}; they are 0-based")
    return arr


def _image_sets(imdb):
    """imdb['images']['set'] as an array, or None when the database does not have it."""
    try:
        sets = imdb["images"]["set"]
    except (KeyError, TypeError, IndexError):
        return None
    return np.asarray(sets).reshape(-1)


def _parse(args, kwargs, imdb, get_batch):
    args, kwargs = _rename_aliases(args, kwargs)
    opts = parse_options(_FNAME, args, kwargs, _OPTIONS)
    if not callable(get_batch):
        raise TypeError(f"{_FNAME}: get_batch must be callable as get_batch(imdb, batch), "
                        f"got {type(get_batch).__name__}")

    exp_dir = opts["exp_dir"]
    if exp_dir is not None and not isinstance(exp_dir, (str, os.PathLike)):
        raise TypeError(f"{_FNAME}: exp_dir must be a path or None, got {exp_dir!r}")
    opts["exp_dir"] = None if exp_dir is None else os.fspath(exp_dir)
    for name in ("continue_", "prefetch", "nesterov", "save_solver_state", "conserve_memory",
                 "plan_memory", "plot_statistics", "progress", "check_finite"):
        opts[name] = truth_value(_FNAME, name, opts[name])
    opts["batch_size"] = integer(_FNAME, "batch_size", opts["batch_size"], low=1)
    opts["num_sub_batches"] = integer(_FNAME, "num_sub_batches", opts["num_sub_batches"], low=1)
    opts["epoch_size"] = limit(_FNAME, "epoch_size", opts["epoch_size"])
    opts["back_prop_depth"] = limit(_FNAME, "back_prop_depth", opts["back_prop_depth"])
    opts["learning_rate"] = _learning_rates(opts["learning_rate"])
    if opts["num_epochs"] is None:
        # A schedule sets the length of training; a single rate trains MatConvNet's 300 epochs.
        rates = opts["learning_rate"]
        opts["num_epochs"] = len(rates) if len(rates) > 1 else 300
    opts["num_epochs"] = integer(_FNAME, "num_epochs", opts["num_epochs"])
    opts["weight_decay"] = real_number(_FNAME, "weight_decay", opts["weight_decay"], low=0.0, finite=True)
    opts["momentum"] = real_number(_FNAME, "momentum", opts["momentum"], 0.0, 1.0, high_open=True, finite=True)
    opts["random_seed"] = integer(_FNAME, "random_seed", opts["random_seed"])
    opts["comm_timeout"] = real_number(_FNAME, "comm_timeout", opts["comm_timeout"], low=0.0, finite=True)
    if opts["comm_timeout"] == 0:
        raise ValueError(f"{_FNAME}: comm_timeout must be positive, got 0.0")
    given = {_key(name) for name in [*args[::2], *kwargs] if isinstance(name, str)}
    opts["solver"] = _solver(opts["solver"], opts["solver_opts"], opts["momentum"], opts["nesterov"], given)
    opts["solver_opts"] = opts["solver"].options

    error_function = opts["error_function"]
    if error_function is not None and not callable(error_function):
        if not isinstance(error_function, str) or error_function.lower() not in ("multiclass", "binary", "none"):
            raise ValueError(
                f"{_FNAME}: error_function must be 'multiclass', 'binary', 'none' or a callable, got {error_function!r}"
            )
        opts["error_function"] = error_function.lower()
    labels = opts["error_labels"]
    if labels is not None:
        if isinstance(labels, str) or not all(isinstance(s, str) for s in labels):
            raise TypeError(f"{_FNAME}: error_labels must be a list of strings, got {labels!r}")
        opts["error_labels"] = list(labels)
    if opts["post_epoch_fn"] is not None and not callable(opts["post_epoch_fn"]):
        raise TypeError(f"{_FNAME}: post_epoch_fn must be callable or None, got {opts['post_epoch_fn']!r}")

    sets = _image_sets(imdb)
    num_images = None if sets is None else sets.size
    for name, set_id in (("train", 1), ("val", 2)):
        indices = _indices(name, opts[name], num_images)
        if indices is None:
            if sets is None:
                raise ValueError(
                    f"{_FNAME}: {name} is not given and imdb has no ['images']['set'] to take it from"
                )
            indices = np.flatnonzero(sets == set_id)
        opts[name] = indices
    return opts


# --------------------------------------------------------------------------------------------------
# Solvers: the objects of cnnx.solvers (MatConvNet's examples/+solver), chosen by the options
# --------------------------------------------------------------------------------------------------


def _solver(solver, solver_opts, momentum, nesterov, given=()):
    """The solver object for the options ``solver``, ``solver_opts``, ``momentum``, ``nesterov``.

    ``given`` holds the keys (``_key``) of the options the caller gave: a solver object carries
    its own options, so neither ``momentum`` nor ``nesterov`` may be given with it, nor
    ``solver_opts`` other than None.
    """
    if solver_opts is not None and not isinstance(solver_opts, dict):
        raise TypeError(f"{_FNAME}: solver_opts must be a dict, got {type(solver_opts).__name__}")
    if isinstance(solver, solvers.Solver):
        carried = ["solver_opts"] if solver_opts is not None else []
        carried += [name for name in ("momentum", "nesterov") if _key(name) in given]
        if carried:
            raise ValueError(f"{_FNAME}: {carried[0]} given, but the solver {solver!r} carries its own options")
        return solver
    if isinstance(solver, type) and issubclass(solver, solvers.Solver):
        raise TypeError(f"{_FNAME}: solver is the class {solver.__name__}; pass an object of it, "
                        f"such as {solver.__name__}()")
    if callable(solver):
        return solvers.UserSolver(solver, solver_opts)
    if solver is None:
        solver = "sgd"  # MatConvNet's default
    if not isinstance(solver, str) or solver.lower() not in solvers.SOLVERS:
        names = ", ".join(repr(name) for name, cls in solvers.SOLVERS.items() if cls is not solvers.SGD)
        raise ValueError(
            f"{_FNAME}: unknown solver {solver!r}; use None (SGD with momentum), {names} "
            f"or a callable solver(w, state, grad, solver_opts, lr) -> (w, state)"
        )
    return solvers.SOLVERS[solver.lower()]._from_solver_opts(solver_opts, momentum, nesterov)


def _restored_state(solver, saved, w, where):
    """A solver state read back from a checkpoint (as load_matconvnet converts it), shaped like w."""
    return solver.restore_state(saved, w, where)


class _Slot:
    """One trainable array: where it lives, its multipliers and how it learns."""

    def __init__(self, value, der, learning_rate, weight_decay, method, fanout=1):
        self.value = value
        self.der = der
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.method = method  # 'gradient' or 'average' (bnorm moments, DagNN 'average' params)
        self.fanout = fanout


def _updated(slot, state, batch_size, rate, opts):
    """MatConvNet beta25's update of one parameter; returns (new value, new solver state).

    The multipliers, the weight decay and the 1/batch scaling are applied here, once, for every
    solver; the solver object (``opts['solver']``) then takes its step.
    """
    w, g = slot.value, slot.der
    if slot.method == "average":
        lr = slot.learning_rate
        return (1 - lr) * w + (lr / batch_size / slot.fanout) * g, state
    lr = rate * slot.learning_rate
    decay = opts["weight_decay"] * slot.weight_decay
    if not (lr > 0 or decay > 0):
        return w, state
    return opts["solver"].update(w, state, g, 1.0 / batch_size, decay, lr)


# --------------------------------------------------------------------------------------------------
# Error functions: MatConvNet's error_multiclass / error_binary, on the predictions (the loss's input)
# --------------------------------------------------------------------------------------------------


def _as4d(arr):
    return arr.reshape(arr.shape + (1,) * (4 - arr.ndim)) if arr.ndim < 4 else arr


def _error_multiclass(labels, predictions):
    """[top-1 errors, top-5 errors] summed over the batch (over pixels too for dense outputs)."""
    height, width, classes, images = _as4d(np.asarray(predictions)).shape
    predictions = np.reshape(predictions, (height * width, classes, images), order="F")
    labels = parse_labels(_FNAME, labels, height, width, classes, images, weights=True, check_values=False)
    mass = (labels[:, :1, :] > 0).astype(np.float64)
    if labels.shape[1] == 2:  # a second channel weighs each pixel
        mass = mass * labels[:, 1:, :]
    ranked = np.argsort(-predictions, axis=1, kind="stable")[:, : min(5, classes), :] + 1
    wrong = ranked != labels[:, :1, :]
    return np.array([np.sum(mass * wrong[:, :1, :]), np.sum(mass * wrong.min(axis=1, keepdims=True))])


def _error_binary(labels, predictions):
    predictions = _as4d(np.asarray(predictions))
    labels = np.asarray(labels)
    if labels.size == predictions.shape[3]:
        labels = labels.reshape(1, 1, 1, -1)
    return np.array([np.sum(predictions * labels < 0)], dtype=np.float64)


_ERROR_LABELS = {"multiclass": ["top1err", "top5err"], "binary": ["binerr"], "none": []}


# --------------------------------------------------------------------------------------------------
# The two kinds of network behind one interface
# --------------------------------------------------------------------------------------------------


def _check_images(images, batch, dtype, where):
    if not isinstance(images, np.ndarray) or images.dtype not in (np.float32, np.float64):
        kind = type(images).__name__ if not isinstance(images, np.ndarray) else f"a {images.dtype} array"
        raise TypeError(f"{_FNAME}: get_batch must return images as a float32 or float64 array ({where}), got {kind}")
    if dtype is not None and images.dtype != dtype:
        raise TypeError(f"{_FNAME}: get_batch returned {images.dtype} images ({where}) for a {dtype} network")
    if not 2 <= images.ndim <= 4:
        raise ValueError(f"{_FNAME}: get_batch must return H x W x C x N images ({where}), got shape {images.shape}")
    count = images.shape[3] if images.ndim == 4 else 1
    if count != len(batch):
        raise ValueError(
            f"{_FNAME}: get_batch returned {count} images ({where}, shape {images.shape}) for a batch of "
            f"{len(batch)} indices; images go along the 4th dimension"
        )


def _check_labels(labels, batch, error_function, where):
    """Check a batch's labels (cnnx._labels' rules); returns them as an array (lists are accepted)."""
    return batch_labels(f"{_FNAME}: get_batch ({where})", labels, len(batch), classes=error_function == "multiclass")


def _ones(count):
    return np.ones((1, count), dtype=np.float32)  # MatConvNet's ones(1, J, 'single')


def _layer_label(index, layer):
    """A SimpleNN layer as messages name it: ``layers[0] ('conv1')``."""
    name = layer.get("name")
    return f"layers[{index}]" + (f" ('{name}')" if isinstance(name, str) and name else "")


def _weight_methods(layer, count):
    """How each of a SimpleNN layer's ``count`` weights learns ('gradient' where its type says nothing)."""
    declared = LAYER_TYPES[layer["type"]].weight_train_methods
    return [declared[j] if j < len(declared) else "gradient" for j in range(count)]


def _multipliers(layer, field, count, index):
    """A layer's learningRate or weightDecay, one number per weight. The weight decay of a weight
    learned by a running average is never read, so the trailing such weights may lack one
    (MatConvNet's bnorm layers give ``weightDecay = [0 0]`` for [G, B, MOMENTS]); it reads as 0."""
    values = np.asarray(layer[field], dtype=np.float64).reshape(-1)
    methods = _weight_methods(layer, count)
    needed = count
    while field == "weightDecay" and needed and methods[needed - 1] == "average":
        needed -= 1
    if not needed <= values.size <= count:
        raise ValueError(f"{_FNAME}: {_layer_label(index, layer)} has {count} weights but "
                         f"{values.size} {field} multipliers")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{_FNAME}: {_layer_label(index, layer)} has a non-finite {field}")
    return np.concatenate([values, np.zeros(count - values.size)])


class _SimpleNNModel:
    """A SimpleNN network (dict of layer dicts) driven through vl_simplenn."""

    def __init__(self, net, opts, training):
        from .simplenn import vl_simplenn, vl_simplenn_tidy

        self._forward = vl_simplenn
        if not isinstance(net, dict) or not isinstance(net.get("layers"), (list, tuple)) or not net["layers"]:
            raise TypeError(f"{_FNAME}: net must be a SimpleNN dict with a non-empty 'layers' list, or a DagNN")
        net = vl_simplenn_tidy(copy.deepcopy(net))
        self.net = net
        layers = net["layers"]
        self.opts = opts
        self.error_function = opts["error_function"] or "multiclass"
        # The labels go to the loss layer (a type registered with loss=True; MatConvNet: the last
        # layer), whose input are the predictions the error functions read.
        self.loss = max((l for l, layer in enumerate(layers) if LAYER_TYPES[layer["type"]].loss),
                        default=len(layers) - 1)
        if self.error_function in ("multiclass", "binary") and self.loss == 0:
            raise ValueError(f"{_FNAME}: error_function '{self.error_function}' reads the predictions of the "
                             "layer before the loss, but the network has one layer")
        if self.loss > 0:
            layers[self.loss - 1]["precious"] = True  # keep the predictions for the error function
        self.dtype = None
        for index, layer in enumerate(layers):
            weights = layer.get("weights") or []
            for w in weights:
                if isinstance(w, np.ndarray) and w.size:
                    self.dtype = self.dtype or w.dtype
            if weights and training:
                for field in ("learningRate", "weightDecay"):
                    if field not in layer:
                        layer[field] = _ones(len(weights))
                    _multipliers(layer, field, len(weights), index)
        labels = opts["error_labels"]
        if labels is None:
            labels = _ERROR_LABELS.get(self.error_function) if isinstance(self.error_function, str) else None
        self.error_labels = labels
        self._original_class = layers[self.loss].get("class")
        self._res = None
        self._totals = None
        self.rng = None  # the dropout layers' generator, set by the trainer each epoch

    def check_batch(self, out, batch, where):
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"{_FNAME}: get_batch must return (images, labels) for a SimpleNN network, "
                            f"got {type(out).__name__}")
        images, labels = out
        _check_images(images, batch, self.dtype, where)
        return images, _check_labels(labels, batch, self.error_function, where)

    def start_phase(self):
        self._totals = None

    def evaluate(self, inputs, train, accumulate):
        images, labels = inputs
        layers = self.net["layers"]
        layers[self.loss]["class"] = labels
        dzdy = np.ones((), dtype=images.dtype) if train else None
        # Unless accumulating, the last batch's res is spent: free it before this one is computed.
        previous, self._res = (self._res if accumulate else None), None
        self._res = self._forward(
            self.net, images, dzdy, previous,
            mode="normal" if train else "test", conserve_memory=self.opts["conserve_memory"],
            accumulate=accumulate, back_prop_depth=self.opts["back_prop_depth"], rng=self.rng,
            input_derivative=False,
        )
        res = self._res
        function = self.error_function
        if function == "multiclass":
            errors = _error_multiclass(labels, res[self.loss]["x"])
        elif function == "binary":
            errors = _error_binary(labels, res[self.loss]["x"])
        elif function == "none":
            errors = np.zeros(0)
        else:
            errors = np.asarray(function(self.opts, labels, res), dtype=np.float64).reshape(-1)
            if self.error_labels is None:
                self.error_labels = [f"err{i + 1}" for i in range(errors.size)]
            if errors.size != len(self.error_labels):
                raise ValueError(f"{_FNAME}: error_function returned {errors.size} values for "
                                 f"{len(self.error_labels)} error_labels")
        values = np.concatenate([[np.sum(res[-1]["x"], dtype=np.float64)], errors])
        self._totals = values if self._totals is None else self._totals + values

    def phase_sums(self):
        """The objective and errors summed over the phase so far (what the MPI ranks add up)."""
        return self._totals

    def statistics(self, num, sums=None):
        """The objective and errors summed over the phase so far (or ``sums``), divided by the number of images."""
        sums = self._totals if sums is None else sums
        if sums is None:
            return {}
        return dict(zip(["objective", *self.error_labels], (sums / num).tolist()))

    def slots(self):
        """(key, _Slot) for every array with a derivative from the last batch."""
        out = []
        for l, layer in enumerate(self.net["layers"]):
            ders = self._res[l].get("dzdw") if self._res is not None else None
            weights = layer.get("weights") or []
            if not ders or not weights:
                continue
            rates = _multipliers(layer, "learningRate", len(weights), l)
            decays = _multipliers(layer, "weightDecay", len(weights), l)
            methods = _weight_methods(layer, len(weights))
            for j, der in enumerate(ders):
                if der is None or np.size(der) == 0:
                    continue
                out.append(((l, j), _Slot(weights[j], der, float(rates[j]), float(decays[j]), methods[j])))
        return out

    def set_value(self, key, value):
        self.net["layers"][key[0]]["weights"][key[1]] = value

    def values(self):
        """Every weight array, layer by layer."""
        return [w for layer in self.net["layers"] for w in layer.get("weights") or [] if w is not None]

    def describe_key(self, key):
        l, j = key
        return f"{_layer_label(l, self.net['layers'][l])} weights[{j}]"

    def architecture(self):
        """What must match for a checkpoint to continue this network: one line per layer."""
        return ["a SimpleNN network"] + [
            f"{_layer_label(l, layer)}: {layer['type']}" + _shapes_text(layer.get("weights") or [])
            for l, layer in enumerate(self.net["layers"])]

    def end_phase(self):
        self._res = None
        self.net["layers"][self.loss]["class"] = self._original_class
        if self._original_class is None:
            self.net["layers"][self.loss].pop("class", None)

    def saved_solver_state(self, states):
        """MatConvNet's layout: one list per layer, one entry per weight."""
        layers = self.net["layers"]
        return [[states.get((l, j)) for j in range(len(layer.get("weights") or []))]
                for l, layer in enumerate(layers)]

    def restored_solver_state(self, saved, solver):
        states = {}
        saved = _as_list(saved)
        if not saved:
            return states
        layers = self.net["layers"]
        if len(saved) != len(layers):
            raise ValueError(f"{_FNAME}: the checkpoint's solver state has {len(saved)} layers, "
                             f"the network {len(layers)}")
        for l, layer in enumerate(layers):
            entries = _as_list(saved[l])
            for j, w in enumerate(layer.get("weights") or []):
                if j < len(entries):
                    states[(l, j)] = _restored_state(solver, entries[j], w, self.describe_key((l, j)))
        return states


class _DagNNModel:
    """A DagNN driven through its eval; statistics are the running averages of its blocks that report one
    (``reports_average``: the Loss layers)."""

    def __init__(self, net, opts, training):
        if opts["error_function"] is not None or opts["error_labels"] is not None:
            raise TypeError(f"{_FNAME}: error_function and error_labels apply to SimpleNN networks; a DagNN "
                            "reports the outputs of its Loss layers (add e.g. Loss(loss='classerror'))")
        if opts["back_prop_depth"] != math.inf:
            raise TypeError(f"{_FNAME}: back_prop_depth applies to SimpleNN networks only")
        self.net = net.copy()
        self.opts = opts
        self._mode = net.mode
        self.inputs = self.net.get_inputs()
        self.label_inputs = self.net.get_label_inputs()
        der_outputs = {"objective": 1} if opts["der_outputs"] is None else opts["der_outputs"]
        if isinstance(der_outputs, (list, tuple)):
            if len(der_outputs) % 2:
                raise ValueError(f"{_FNAME}: der_outputs must be a dict or a list [name, value, ...]")
            der_outputs = dict(zip(der_outputs[::2], der_outputs[1::2]))
        if not isinstance(der_outputs, dict) or not der_outputs:
            raise TypeError(f"{_FNAME}: der_outputs must be a non-empty dict {{name: derivative}}, got {der_outputs!r}")
        for name in der_outputs:
            if self.net.get_var_index(name) is None:
                raise ValueError(f"{_FNAME}: der_outputs names '{name}', which is not a variable of the network "
                                 f"(outputs: {self.net.get_outputs()})")
        self.der_outputs = der_outputs
        self.losses = [layer for layer in self.net.layers if layer.block.reports_average]
        values = [p.value for p in self.net.params if p.value is not None]
        self.dtype = values[0].dtype if values else None
        if training and any(p.value is None for p in self.net.params):
            missing = [p.name for p in self.net.params if p.value is None]
            raise ValueError(f"{_FNAME}: parameters {missing} have no value (call net.init_params())")
        self.rng = None

    def check_batch(self, out, batch, where):
        if isinstance(out, (list, tuple)):
            if len(out) % 2 or not all(isinstance(name, str) for name in out[::2]):
                raise TypeError(f"{_FNAME}: get_batch must return a dict {{'input': images, 'label': labels}} or a "
                                f"list ['input', images, 'label', labels] for a DagNN ({where})")
            pairs = dict(zip(out[::2], out[1::2]))
        elif isinstance(out, dict):
            pairs = out
        else:
            raise TypeError(f"{_FNAME}: get_batch must return a dict {{'input': images, 'label': labels}} for a "
                            f"DagNN ({where}), got {type(out).__name__}")
        pairs = dict(pairs)
        for name, value in pairs.items():
            if name not in self.inputs:
                raise ValueError(f"{_FNAME}: get_batch returned '{name}', which is not an input of the network "
                                 f"({where}; inputs: {self.inputs})")
            if name in self.label_inputs:
                pairs[name] = _check_labels(value, batch, None, f"{where}, '{name}'")
            else:
                _check_images(value, batch, self.dtype, f"{where}, '{name}'")
        missing = [name for name in self.inputs if name not in pairs]
        if missing:
            raise ValueError(f"{_FNAME}: get_batch did not return the network inputs {missing} ({where})")
        return pairs

    def start_phase(self):
        for layer in self.losses:
            layer.block.reset()

    def evaluate(self, inputs, train, accumulate):
        net = self.net
        net.mode = "normal" if train else "test"
        net.accumulate_param_ders = accumulate
        net.conserve_memory = self.opts["conserve_memory"]
        net.input_derivatives = False  # training reads only the parameters' derivatives
        net.rng = self.rng
        net.eval(inputs, self.der_outputs if train else None)

    def phase_sums(self):
        """Each reporting block's sum and count (what the MPI ranks add up)."""
        return [value for layer in self.losses
                for value in (layer.block.average * layer.block.num_averaged, layer.block.num_averaged)]

    def statistics(self, num, sums=None):
        """MatConvNet's extractStats: each reporting block's running average, under its output's name
        (with ``sums``: their sums over the ranks divided by their counts)."""
        if sums is None:
            return {layer.outputs[0]: float(layer.block.average) for layer in self.losses}
        return {layer.outputs[0]: float(total / count) if count else 0.0
                for layer, total, count in zip(self.losses, sums[::2], sums[1::2])}

    def slots(self):
        return [(p, _Slot(param.value, param.der, float(param.learning_rate), float(param.weight_decay),
                          param.train_method, max(param.fanout, 1)))
                for p, param in enumerate(self.net.params) if param.der is not None]

    def set_value(self, key, value):
        self.net.params[key].value = value

    def values(self):
        """Every parameter value."""
        return [param.value for param in self.net.params if param.value is not None]

    def describe_key(self, key):
        return f"parameter '{self.net.params[key].name}'"

    def architecture(self):
        """What must match for a checkpoint to continue this network: layers, then parameters."""
        return (["a DagNN network"]
                + [f"layer '{layer.name}': {layer.block.block_type()}" for layer in self.net.layers]
                + [f"parameter '{param.name}'" + _shapes_text([param.value]) for param in self.net.params])

    def end_phase(self):
        self.net.reset()
        self.net.mode = self._mode

    def saved_solver_state(self, states):
        return [states.get(p) for p in range(len(self.net.params))]

    def restored_solver_state(self, saved, solver):
        saved = _as_list(saved)
        if not saved:
            return {}
        params = self.net.params
        if len(saved) != len(params):
            raise ValueError(f"{_FNAME}: the checkpoint's solver state has {len(saved)} parameters, the network "
                             f"{len(params)}")
        return {p: _restored_state(solver, saved[p], param.value, f"parameter '{param.name}'")
                for p, param in enumerate(params)}


def _shapes_text(arrays):
    """' with shapes 5x5x3x32, 32' (MATLAB's dropped singletons ignored), '' without arrays."""
    shapes = ["x".join(str(d) for d in np.shape(a) if d != 1) or "1" for a in arrays if a is not None]
    return f" with shapes {', '.join(shapes)}" if shapes else ""


def _as_list(value):
    """A loaded cell array as a list: None ([]) is empty, a row of numbers becomes its elements."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1))
    return list(value) if isinstance(value, (list, tuple)) else [value]


# --------------------------------------------------------------------------------------------------
# Progress, statistics files and the plot
# --------------------------------------------------------------------------------------------------


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """A tqdm bar per phase on a terminal; otherwise about ten plain lines per phase."""

    def __init__(self, enabled, phase, epoch, num_batches):
        self.enabled = enabled and num_batches > 0
        self.phase, self.epoch, self.num_batches = phase, epoch, num_batches
        self.bar = None
        if self.enabled and _is_terminal(sys.stdout):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=num_batches, desc=f"{phase} epoch {epoch:02d}", file=sys.stdout,
                            unit="batch", leave=True, dynamic_ncols=True)

    def update(self, batch_number, stats, speed):
        if not self.enabled:
            return
        shown = {k: v for k, v in stats.items() if k not in ("num", "time")}
        if self.bar is not None:
            self.bar.set_postfix({**{k: f"{v:.3f}" for k, v in shown.items()}, "img/s": f"{speed:.1f}"}, refresh=False)
            self.bar.update(1)
        elif batch_number == self.num_batches or batch_number % max(1, self.num_batches // 10) == 0:
            values = " ".join(f"{k}: {v:.3f}" for k, v in shown.items())
            print(f"{self.phase}: epoch {self.epoch:02d}: {batch_number:3d}/{self.num_batches:3d}: "
                  f"{speed:.1f} img/s {values}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _json_number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _write_stats_json(path, stats):
    records = {
        phase: [{"epoch": epoch, **{k: _json_number(v) if k != "num" else int(v) for k, v in entry.items()}}
                for epoch, entry in enumerate(stats[phase], start=1)]
        for phase in ("train", "val")
    }

    with atomic_open(path, "w", _FNAME, "the statistics") as stream:
        json.dump(records, stream, indent=1)


class _Plot:
    """net-train.png: one panel per statistic, train and val against epoch.

    The figure is kept from epoch to epoch and only its data change: building the axes and ticks
    anew would cost most of the ~0.1 s a redraw takes. Without matplotlib there is no plot and
    one note says so.
    """

    def __init__(self, path):
        self.path = path
        self.layout = None
        self.figure = None
        self.lines = {}
        self.told_no_matplotlib = False

    def draw(self, stats):
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            if not self.told_no_matplotlib:
                _say("matplotlib is not installed, so there is no net-train.png "
                     "(pip install matplotlib, or cnnx[plot])")
            self.told_no_matplotlib = True
            return
        names = []
        for phase in ("train", "val"):
            for entry in stats[phase]:
                names += [k for k in entry if k not in ("num", "time") and k not in names]
        if not names:
            return
        series = {(name, phase): np.array([entry.get(name, np.nan) for entry in stats[phase]], dtype=float)
                  for name in names for phase in ("train", "val")}
        layout = [key for key, values in series.items() if not np.all(np.isnan(values))]
        if layout != self.layout:
            self.layout = layout
            self.figure = Figure(figsize=(4 * len(names), 3.5))
            # Fixed margins: a layout engine would double the cost of every redraw.
            self.figure.subplots_adjust(left=0.2 / len(names), right=1 - 0.05 / len(names), bottom=0.15,
                                        top=0.9, wspace=0.3)
            self.lines = {}
            for i, name in enumerate(names):
                ax = self.figure.add_subplot(1, len(names), i + 1)
                for phase in ("train", "val"):
                    if (name, phase) in layout:
                        self.lines[name, phase] = ax.plot([], [], "o-", label=phase)[0]
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("epoch")
                ax.set_title(name)
                ax.grid(True)
                ax.legend()
        for key, line in self.lines.items():
            line.set_data(np.arange(1, series[key].size + 1), series[key])
        for ax in self.figure.axes:
            ax.relim()
            ax.autoscale_view()
        with atomic_open(self.path, "wb", _FNAME, "the plot") as stream:
            self.figure.savefig(stream, format="png", dpi=80)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _checkpoint_path(exp_dir, epoch):
    return os.path.join(exp_dir, f"net-epoch-{epoch}.mat")


def _checkpoint_epochs(exp_dir):
    """The epochs N of the files net-epoch-N.mat in exp_dir, ascending, and the names that only
    look like checkpoints (``net-epoch-03.mat``, a temporary file of another program)."""
    epochs, others = [], []
    for name in sorted(os.listdir(exp_dir)):
        match = _CHECKPOINT.fullmatch(name)
        if match:
            epochs.append(int(match.group(1)))
        elif _LOOKS_LIKE_CHECKPOINT.fullmatch(name):
            others.append(name)
    return sorted(epochs), others


class _Unusable(Exception):
    """A checkpoint that resuming skips: damaged, unreadable, or not this folder's epoch N."""


def _resume(exp_dir, model, opts):
    """(model, states, stats, epoch) from the newest usable checkpoint in exp_dir (epoch 0: none).

    Cleans up first: the temporary files of interrupted saves are deleted. A checkpoint that fails
    its checks is renamed to ``net-epoch-N.mat.rejected`` (so no later epoch overwrites it) and the
    next older one is tried.
    """
    removed = remove_stale_temporaries(exp_dir, _WRITTEN)
    if removed:
        _say(f"deleted {len(removed)} temporary file{'s' * (len(removed) != 1)} left in {exp_dir} "
             "by interrupted saves")
    epochs, others = _checkpoint_epochs(exp_dir)
    for name in others:
        _say(f"ignoring {os.path.join(exp_dir, name)}: not a checkpoint name cnn_train writes "
             "(net-epoch-N.mat); left as it is")
    rejected = False
    for epoch in reversed(epochs):
        path = _checkpoint_path(exp_dir, epoch)
        try:
            loaded = _load_checkpoint(path, epoch, model, opts)
        except _Unusable as reason:
            os.replace(path, path + ".rejected")
            _say(f"ignoring {path}: {reason}; renamed it to {os.path.basename(path)}.rejected")
            rejected = True
            continue
        if rejected:
            _say(f"resuming from epoch {epoch} ({path}), the newest checkpoint that passes its checks")
        elif opts["progress"]:
            _say(f"resuming by loading epoch {epoch} from {path}")
        return (*loaded, epoch)
    if rejected:
        _say(f"no usable checkpoint in {exp_dir}: starting from epoch 1")
    return model, {}, {"train": [], "val": []}, 0


def _stats_from_saved(saved, path):
    """stats as load_matconvnet returns it -> {'train': [dict per epoch], 'val': [...]}."""
    stats = {}
    for phase in ("train", "val"):
        records = saved.get(phase) if isinstance(saved, dict) else None
        records = [records] if isinstance(records, dict) else records  # a 1x1 struct array: one epoch
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{_FNAME}: {path} has no readable stats.{phase}")
        stats[phase] = [{k: int(v) if k == "num" else float(v) for k, v in record.items() if v is not None}
                        for record in records]
    return stats


def _saved_stats(stats):
    return {phase: [dict(entry) for entry in stats[phase]] for phase in ("train", "val")}


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------


def _seed_epoch(seed):
    """The generator that shuffles the sets of the epoch (the other random sources: _seed_piece)."""
    return np.random.default_rng([seed, 0])


def _seed_piece(seed, batch_number, piece, model):
    """Reseed what a piece of a batch draws from (get_batch's np.random, the dropout masks) from the
    epoch's seed, the batch and the piece's place in it only: so MPI ranks sharing a batch draw what
    one process with that many sub-batches draws."""
    np.random.seed([seed % 2**32, batch_number, piece])
    model.rng = np.random.default_rng([seed, 1, batch_number, piece])


_STOPPED = ("stopped before saving this epoch, so the last checkpoint is intact (lower the learning rate, "
            "or pass check_finite=False to train on regardless)")


def _run_phase(model, phase, subset, epoch, rate, opts, imdb, get_batch, states, ranks=None, memory=None):
    """One epoch of one set; with ``ranks`` (cnnx._distributed.Ranks) this rank's share of it; with
    ``memory`` (cnnx._memory.StepMemory) each batch is marked as a step."""
    train = phase == "train"
    batch_size, subs = opts["batch_size"], opts["num_sub_batches"]
    num_batches = -(-len(subset) // batch_size)
    progress = _Progress(opts["progress"] and (ranks is None or ranks.is_root), phase, epoch, num_batches)
    stats = {"num": 0, "time": 0.0}
    num = 0
    model.start_phase()
    start = time.perf_counter()
    try:
        for number, t in enumerate(range(0, len(subset), batch_size), start=1):
            if memory is not None:
                memory.start_step()
            this_batch = min(batch_size, len(subset) - t)
            mine = subset[t : t + this_batch]
            if ranks is not None:
                mine = ranks.share(mine)
            where = f"{phase} epoch {epoch}, batch {number}"
            for s in range(subs):
                batch = mine[s::subs]  # sub-batches interleave, as MatConvNet's
                if len(batch) == 0:
                    continue
                _seed_piece(opts["random_seed"] + epoch, number, s if ranks is None else ranks.rank * subs + s, model)
                inputs = model.check_batch(get_batch(imdb, batch), batch, where)
                model.evaluate(inputs, train, accumulate=s > 0)
            num += this_batch
            if ranks is None:
                statistics = model.statistics(num)
            else:  # one exchange per step: the statistics, and in training every derivative
                slots = model.slots() if train else None
                statistics = model.statistics(num, ranks.exchange(len(mine), model.phase_sums(), slots))
                if train and opts["progress"] and ranks.is_root and not ranks.reported:
                    ranks.reported = True
                    print(f"{_FNAME}: {ranks.size} MPI ranks, kernel threads per rank: {get_num_threads()}; a training "
                          f"step gathers {ranks.bytes_per_step:,} bytes into every rank (one allgather)", flush=True)
            if opts["check_finite"]:
                for name, value in statistics.items():
                    if not math.isfinite(value):
                        raise FloatingPointError(f"{_FNAME}: the {name} became {value} in {where}; {_STOPPED}")
            if train:
                for key, slot in (model.slots() if ranks is None else slots):
                    if key not in states:
                        states[key] = opts["solver"].init_state(slot.value)
                    value, states[key] = _updated(slot, states[key], this_batch, rate, opts)
                    if opts["check_finite"] and not np.isfinite(value).all():
                        raise FloatingPointError(f"{_FNAME}: {model.describe_key(key)} became NaN or infinite "
                                                 f"in the update after {where}; {_STOPPED}")
                    model.set_value(key, value)
            if memory is not None:
                memory.end_step()
            elapsed = time.perf_counter() - start
            stats = {**statistics, "num": num, "time": elapsed}
            progress.update(number, stats, (t + this_batch) / max(elapsed, 1e-12))
    finally:
        progress.close()
        model.end_phase()
    return stats


def _make_model(net, opts, training):
    if isinstance(net, dict):
        if opts["der_outputs"] is not None:
            raise TypeError(f"{_FNAME}: der_outputs applies to DagNN networks only")
        return _SimpleNNModel(net, opts, training)
    from .dagnn import DagNN

    if isinstance(net, DagNN):
        return _DagNNModel(net, opts, training)
    raise TypeError(f"{_FNAME}: net must be a SimpleNN dict or a cnnx.dagnn.DagNN, got {type(net).__name__}")


def _start_ranks(model, opts):
    """cnnx._distributed.Ranks for the ``comm`` option (None: one process), after the start-up handshake."""
    from . import __version__, _distributed

    comm = _distributed.communicator(opts["comm"])
    if comm is None:
        return None
    ranks = _distributed.Ranks(comm, opts["comm_timeout"])
    facts = {"cnnx version": __version__, "network": model.architecture(),
             "initial weights": _distributed.digest_of_weights(model.values())}
    for name in ("batch_size", "num_sub_batches", "num_epochs", "epoch_size", "random_seed", "weight_decay",
                 "learning_rate", "continue_", "check_finite"):
        facts[name] = opts[name]
    facts["solver"] = repr(opts["solver"])
    facts["training set"] = _distributed.digest_of_weights([opts["train"]])
    facts["validation set"] = _distributed.digest_of_weights([opts["val"]])
    ranks.handshake(facts)
    ranks.check_batches("training", min(opts["train"].size, opts["epoch_size"]), opts["batch_size"])
    ranks.check_batches("validation", opts["val"].size, opts["batch_size"])
    return ranks


def _resume_sending(exp_dir, model, opts):
    """_resume on rank 0, with the path of the checkpoint to send to the other ranks (None: none)."""
    resumed = _resume(exp_dir, model, opts)
    return resumed, (_checkpoint_path(exp_dir, resumed[3]) if resumed[3] else None)


def _load_sent_checkpoint(path, model, opts):
    """(model, states, stats, epoch) from the checkpoint rank 0 sent (None: it resumed from none)."""
    if path is None:
        return model, {}, {"train": [], "val": []}, 0
    epoch = int(_CHECKPOINT.fullmatch(os.path.basename(path)).group(1))
    return (*_load_checkpoint(path, epoch, model, opts), epoch)


def _say(message):
    print(f"{_FNAME}: {message}", flush=True)


def _load_checkpoint(path, epoch, model, opts):
    """The checkpoint's network (as a model), solver states and statistics.

    Raises _Unusable for a file to skip (damaged, unreadable, statistics of another epoch count)
    and ValueError for one that must stop the run (no statistics, a different network).
    """
    from .io import load_matconvnet, verify_matconvnet

    try:
        if not verify_matconvnet(path):
            _say(f"{path} has no cnnx checksum (written by MatConvNet or an older cnnx): loading it unchecked")
        net, extras = load_matconvnet(path, with_extra=True)
    except (ValueError, TypeError, KeyError) as err:  # its content; an OSError (no access) stops the run
        raise _Unusable(f"it cannot be read ({err})") from None
    if "stats" not in extras:
        raise ValueError(f"{_FNAME}: the checkpoint {path} was only partially saved (it has no stats)")
    try:
        stats = _stats_from_saved(extras["stats"], path)
    except ValueError as err:
        raise _Unusable(str(err).removeprefix(f"{_FNAME}: ")) from None
    if len(stats["train"]) != epoch:
        raise _Unusable(f"its statistics cover {len(stats['train'])} epochs, not {epoch}, so it is not "
                        f"this folder's checkpoint of epoch {epoch}")
    training = opts["train"].size > 0
    loaded = _make_model(net, opts, training)
    _check_same_network(path, loaded, model)
    state = extras.get("state")
    saved = state.get("solverState") if isinstance(state, dict) else None
    states = loaded.restored_solver_state(saved, opts["solver"])
    return loaded, states, stats


def _check_same_network(path, loaded, model):
    """ValueError unless the checkpoint holds the network asked for (wrapper, layers, shapes)."""
    found, wanted = loaded.architecture(), model.architecture()
    if found == wanted:
        return
    k = next((k for k, (a, b) in enumerate(zip(found, wanted)) if a != b), min(len(found), len(wanted)))
    in_file = found[k] if k < len(found) else "nothing more"
    asked = wanted[k] if k < len(wanted) else "nothing more"
    raise ValueError(f"{_FNAME}: the checkpoint {path} holds another network than the one to train "
                     f"(the checkpoint has {in_file}, net has {asked}); train it in another exp_dir, "
                     "or pass continue_=False to start this one over")


def _save_checkpoint(path, epoch, model, states, stats, opts):
    from .io import save_matconvnet

    solver = opts["solver"]
    solver_state = (model.saved_solver_state({key: solver.saved_state(state) for key, state in states.items()})
                    if opts["save_solver_state"] else None)  # MATLAB []
    # save_matconvnet writes a temporary file in exp_dir and renames it: never a partial checkpoint
    try:
        save_matconvnet(model.net, path, state={"solverState": solver_state}, stats=_saved_stats(stats))
    except OSError as err:
        last = f"net-epoch-{epoch - 1}.mat is the last complete one" if epoch > 1 else "there is none yet"
        raise OSError(err.errno, f"{_FNAME}: could not save the checkpoint of epoch {epoch} "
                                 f"({err.strerror}); {last}") from None


def _write_statistics(exp_dir, stats, plot):
    """stats.json, and net-train.png unless ``plot`` is None."""
    _write_stats_json(os.path.join(exp_dir, "stats.json"), stats)
    if plot is not None:
        plot.draw(stats)


def _make_exp_dir(exp_dir):
    if os.path.exists(exp_dir) and not os.path.isdir(exp_dir):
        raise NotADirectoryError(errno.ENOTDIR, f"{_FNAME}: exp_dir {exp_dir} is a file, not a folder")
    try:
        os.makedirs(exp_dir, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"{_FNAME}: cannot create exp_dir {exp_dir}: {err.strerror}") from None


def cnn_train(net, imdb, get_batch, *args, **kwargs):
    """Train a SimpleNN or DagNN network with SGD (or another solver), as MatConvNet's cnn_train.

    Call forms::

        net, stats = cnn_train(net, imdb, get_batch, batch_size=100, learning_rate=0.01, ...)
        net, stats = cnn_train(net, imdb, get_batch, 'batchSize', 100, 'learningRate', 0.01, ...)

    For each epoch ``e = 1, 2, ..., num_epochs``: reseed every random source from
    ``random_seed + e``, shuffle the training and validation indices, cut the training set to
    ``epoch_size``, then for each batch of ``batch_size`` indices call ``get_batch(imdb, batch)``,
    run the network forward and backward (in ``num_sub_batches`` interleaved pieces whose
    derivatives add up) and update every parameter; then evaluate the validation set in test mode
    (dropout off). After the epoch the checkpoint ``exp_dir/net-epoch-e.mat``, ``stats.json`` and
    ``net-train.png`` are written. With ``continue_`` the run starts after the last complete
    checkpoint in ``exp_dir``. On Linux with glibc, cnn_train first has malloc keep freed memory
    for reuse (:func:`cnnx._memory.keep_freed_memory`): each step reuses the pages of the last,
    and the process keeps its peak memory until it exits. The large arrays of the steps go to one
    planned arena instead (``plan_memory``), given back when training ends.

    The SGD update of a parameter ``w`` with batch derivative ``g`` (MatConvNet beta25: the loss
    is a sum over the batch, so ``g`` is divided by the batch size here)::

        lr = learning_rate[epoch] * (layer's learningRate multiplier for w)
        wd = weight_decay * (layer's weightDecay multiplier for w)
        if lr > 0 or wd > 0:
            g = g / batch_size + wd * w
            v = momentum * v - g                 # v starts at 0
            w = w + lr * (momentum * v - g if nesterov else v)

    The last two lines are the solver's step; the other solvers replace them (``lr`` and the
    decayed, batch-normalised ``g`` stay as above). Each solver is an object of
    :mod:`cnnx.solvers` (``SGD``, ``Adam``, ``AdaGrad``, ``AdaDelta``, ``RMSProp``, MatConvNet's
    ``+solver/*.m``, and ``UserSolver`` around a callable): it holds the solver's options and
    defaults, starts the state of each parameter, performs the step, and converts the state to and
    from the checkpoint's ``state.solverState`` (MatConvNet's layout: SGD's momentum array, Adam's
    struct ``m``, ``v``, ``t``, AdaDelta's struct ``g_sqr``, ``delta_sqr``, AdaGrad's and RMSProp's
    accumulated squares; MatConvNet's ``0`` before the first update reads as zeros).

    Multipliers missing from a SimpleNN layer are set to ones (so biases are weight-decayed too);
    a DagNN parameter carries its own ``learning_rate`` and ``weight_decay``. A bnorm layer's moments
    (SimpleNN ``weights[2]``) and a DagNN parameter with ``train_method = 'average'`` follow
    ``w = (1 - m) * w + m / batch_size / fanout * g`` with ``m`` the parameter's own multiplier
    (learningRate(3); a DagNN BatchNorm's moments start with 0.1) and no weight decay: bnorm's
    ``g`` is the sum over the batch's pieces of their moments times their images, so this is a
    running average of the batch's moments (also over sub-batches and MPI ranks, as MatConvNet's
    multi-GPU training averages them). Such weights need no weightDecay entry.

    Parameters
    ----------
    net : dict or cnnx.dagnn.DagNN
        A SimpleNN network (``{'layers': [...], 'meta': ...}`` ending in a loss layer whose labels
        go in ``layer['class']``) or a DagNN. It is copied: the caller's network is not changed.
    imdb : any
        The image database, passed to ``get_batch`` untouched. When ``train`` or ``val`` is not
        given, ``imdb['images']['set']`` supplies it (MatConvNet's 1 = train, 2 = val).
    get_batch : callable
        ``get_batch(imdb, batch)`` with ``batch`` an int array of 0-based indices. For a SimpleNN
        network it returns ``(images, labels)``: images an H x W x C x N float array of the
        network's dtype with N = ``len(batch)``, labels one (1-based) class per image or an
        H x W x {1,2} x N array. For a DagNN it returns every network input, as a dict
        ``{'input': images, 'label': labels}`` or MatConvNet's flat list
        ``['input', images, 'label', labels]``; inputs named ``label...`` are checked as labels,
        the others as images.
    exp_dir : 'data/exp'
        Folder of the checkpoints, ``stats.json`` and the plot (created if missing). None writes no
        files and does not resume.
    continue_ : True
        Resume after the newest usable ``net-epoch-N.mat`` in ``exp_dir`` (also spelled
        ``resume``, or ``'continue'`` as a name/value pair); see the module's notes on resuming.
        A checkpoint without ``stats`` is an error ("only partially saved"), and so is one that
        holds another network. False starts over, replacing the earlier run's checkpoints.
    batch_size : 256
        Images per update. The last batch of an epoch may be smaller.
    num_sub_batches : 1
        Pieces each batch is evaluated in (to save memory); their derivatives are summed before
        the update, which is the same as one pass.
    train, val : None
        0-based image indices of the training and validation sets (None: from ``imdb``, see
        above; an empty list: no such set). An empty ``train`` only evaluates and saves no
        checkpoints.
    epoch_size : inf
        Training images per epoch at most (taken from the start of the shuffled set).
    num_epochs : None
        Epochs to train. None: the length of a ``learning_rate`` schedule, or MatConvNet's 300
        with a single rate.
    learning_rate : 0.001
        A rate, or a schedule: epoch ``e`` uses ``learning_rate[min(e, len) - 1]``. At least 0.
    weight_decay : 0.0005
        L2 weight decay, at least 0.
    momentum : 0.9
        SGD momentum, in [0, 1).
    nesterov : False
        Nesterov's update (MatConvNet's ``nesterovUpdate``).
    solver : None
        None (or 'sgd') for SGD with momentum; ``'adam'``, ``'adagrad'``, ``'adadelta'``,
        ``'rmsprop'`` (MatConvNet's ``solver.*``, the names of ``cnnx.solvers.SOLVERS``); or a
        callable ``solver(w, state, g, solver_opts, lr) -> (w, state)`` called with the decayed,
        batch-normalised derivative ``g`` (``state`` starts as 0.0); or a solver object such as
        ``cnnx.solvers.Adam(beta1=0.8)`` or ``cnnx.solvers.SGD(momentum=0.5, nesterov=True)``,
        which carries its own options (then ``solver_opts``, ``momentum`` and ``nesterov`` cannot
        be given) and may be a user's subclass of ``cnnx.solvers.Solver``. In ``opts`` (as
        ``post_epoch_fn`` sees them) ``solver`` is the solver object and ``solver_opts`` its options.
    solver_opts : None
        Dict overriding a solver's defaults: adam ``beta1=0.9, beta2=0.999, eps=1e-8``; adagrad
        ``epsilon=1e-10, rho=1``; adadelta ``epsilon=1e-6, rho=0.9`` (it ignores the learning
        rate); rmsprop ``epsilon=1e-8, rho=0.99``; each a finite number at least 0. A callable
        solver receives the dict as it is.
    save_solver_state : True
        Keep the momentum (solver state) in the checkpoints, so a resumed run continues exactly.
    random_seed : 0
        Base of the per-epoch seeds (see the module's notes on reproducibility).
    conserve_memory : True
        Free intermediate results as soon as possible (``vl_simplenn``'s ``conserve_memory``, the
        DagNN's ``conserve_memory``).
    plan_memory : True
        (cnnx only.) Lay out the large arrays of the training steps in one arena planned from the
        second step (:class:`cnnx._memory.StepMemory`): later steps reuse its pages, and the
        memory held stays near the most one step holds at once. False leaves NumPy's allocator.
    back_prop_depth : inf
        SimpleNN: back-propagate through the last layers only.
    error_function : 'multiclass'
        SimpleNN: ``'multiclass'`` (top-1 and top-5 errors of the layer before the loss),
        ``'binary'`` (sign errors against labels of +-1), ``'none'``, or a callable
        ``f(opts, labels, res)`` returning error counts summed over the batch. A DagNN reports its
        loss outputs instead (see Returns).
    error_labels : None
        Names of the errors: ``['top1err', 'top5err']``, ``['binerr']``, or ``err1, err2...`` for a
        callable.
    der_outputs : None
        DagNN: derivatives of the outputs to back-propagate, MatConvNet's ``{'objective': 1}``.
    post_epoch_fn : None
        ``f(net, opts, state)`` called after each epoch (``state``: ``epoch``, ``learning_rate``,
        ``stats``). A number returned replaces the learning rate for later epochs; 0 stops.
    plot_statistics : True
        Save ``exp_dir/net-train.png`` after each epoch (needs matplotlib; without it a note is
        printed once and there is no plot).
    progress : True
        Show progress: a tqdm bar per epoch and set (running objective, errors and images per
        second) on a terminal, about ten plain lines per epoch and set otherwise.
    check_finite : True
        Stop with FloatingPointError, naming the epoch and the batch, as soon as a statistic (the
        objective) or a parameter becomes NaN or infinite, before a checkpoint of the diverged
        network is written. False trains on (MatConvNet's behaviour).
    comm : 'auto'
        Data-parallel training over MPI (mpi4py): an mpi4py communicator, ``'auto'`` (MPI's
        ``COMM_WORLD`` when ``mpiexec`` started more than one rank, else one process) or None (one
        process). Rank ``r`` of ``K`` evaluates images ``r, r + K, ...`` of every batch; one
        allgather per step of one buffer (every derivative and the statistics) lets every rank sum
        the derivatives in rank order and take the same step. ``batch_size`` stays the global batch,
        and K ranks end with exactly the weights of one process with ``num_sub_batches = K`` (the
        same pieces, summed in the same order); against ``num_sub_batches = 1`` they differ by
        float rounding (float32: about 1e-7 relative per step). bnorm moments (``'average'``
        parameters) are averaged over the ranks, weighted by their images. Statistics are summed
        over the ranks; only rank 0 shows progress and writes ``exp_dir``; on resume rank 0 chooses
        the checkpoint and sends it to the others. A start-up handshake checks that every rank has
        the same cnnx version, network, initial weights and options (else ValueError on every
        rank), and the first batch of each set must give every rank an image. Threads per rank:
        ``CNNX_NUM_THREADS``, else the machine's cores divided by its ranks.
    comm_timeout : 600
        Seconds a rank waits for the others at an exchange; then it prints why on stderr and
        aborts the MPI job (a rank died, hangs or stopped on an error of its own).
    prefetch : False
        Accepted for compatibility; ignored.

    Returns
    -------
    net : dict or cnnx.dagnn.DagNN
        The trained network (a copy).
    stats : dict
        ``{'train': [...], 'val': [...]}`` with one dict per epoch: ``objective`` (the summed loss
        divided by the number of images), the errors (``top1err`` and ``top5err``: the fraction of
        images whose label is not the top or in the top 5 predictions), ``num`` (images) and
        ``time`` (seconds). A DagNN reports, under each output's name, the average of every
        ``Loss`` layer (``dagnn.Loss``'s running mean per pixel and image over the epoch), such
        as ``objective`` and a ``'classerror'`` layer's top-1 error.

    Raises
    ------
    TypeError
        An unknown option, an option of the wrong type, a network of the wrong kind, or a
        get_batch result of the wrong type or dtype.
    ValueError
        An option out of range (negative learning rate, batch size below 1, unknown solver...),
        a get_batch result of the wrong shape or with invalid labels (raised at the first batch,
        before the network runs), a partial checkpoint, or a checkpoint of another network.
    FloatingPointError
        With ``check_finite``: the objective or a parameter became NaN or infinite.
    OSError
        ``exp_dir`` is a file or cannot be created, or a file cannot be written (a full disk):
        the message names the file; every complete checkpoint stays as it was.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.train import cnn_train
    >>> x = np.random.default_rng(1).standard_normal((1, 1, 2, 40)).astype(np.float32)
    >>> imdb = {"x": x, "y": 1.0 + (x[0, 0, 0] > x[0, 0, 1]), "images": {"set": np.ones(40)}}
    >>> net = {"layers": [{"type": "conv", "weights": [np.zeros((1, 1, 2, 2), np.float32),
    ...                                                 np.zeros(2, np.float32)]},
    ...                   {"type": "softmaxloss"}]}
    >>> net, stats = cnn_train(net, imdb, lambda db, b: (db["x"][..., b], db["y"][b]),
    ...                        exp_dir=None, batch_size=4, learning_rate=1.0, num_epochs=3,
    ...                        progress=False)
    >>> bool(stats["train"][-1]["top1err"] < 0.2)
    True
    """
    opts = _parse(args, kwargs, imdb, get_batch)
    keep_freed_memory()  # each step reuses the memory of the last (see cnnx._memory)
    training = opts["train"].size > 0
    model = _make_model(net, opts, training)
    ranks = _start_ranks(model, opts)
    exp_dir = opts["exp_dir"]
    stats = {"train": [], "val": []}
    states = {}
    start = 0
    replaced = []  # continue_=False: the earlier run's checkpoints, replaced at the first save
    plot = None
    if exp_dir is not None and ranks is not None and not ranks.is_root:
        if opts["continue_"]:  # rank 0 chooses the checkpoint and sends it
            model, states, stats, start = ranks.resumed(None, lambda path: _load_sent_checkpoint(path, model, opts))
        exp_dir = None  # only rank 0 writes files
    if exp_dir is not None:
        _make_exp_dir(exp_dir)
        plot = _Plot(os.path.join(exp_dir, "net-train.png")) if opts["plot_statistics"] else None
        if opts["continue_"]:
            model, states, stats, start = (_resume(exp_dir, model, opts) if ranks is None else
                                           ranks.resumed(lambda: _resume_sending(exp_dir, model, opts), None))
            if start > 0:  # the run may have died before writing them: rewrite from the checkpoint
                _write_statistics(exp_dir, stats, plot)
                if start >= opts["num_epochs"] and opts["progress"]:
                    _say(f"epoch {start} is done and num_epochs is {opts['num_epochs']}: nothing to train")
        elif training:
            replaced, _ = _checkpoint_epochs(exp_dir)
            if replaced:
                _say(f"continue_ is False: the {len(replaced)} checkpoints of the earlier run in {exp_dir} "
                     "are deleted when this run saves its first")

    rates = list(opts["learning_rate"])
    memory = StepMemory() if opts["plan_memory"] and training else None
    with memory if memory is not None else contextlib.nullcontext():
        for epoch in range(start + 1, opts["num_epochs"] + 1):
            shuffle = _seed_epoch(opts["random_seed"] + epoch)
            rate = rates[min(epoch, len(rates)) - 1]
            train = opts["train"][shuffle.permutation(opts["train"].size)]
            val = opts["val"][shuffle.permutation(opts["val"].size)]
            if opts["epoch_size"] != math.inf:
                train = train[: opts["epoch_size"]]
            stats["train"].append(_run_phase(model, "train", train, epoch, rate, opts, imdb, get_batch, states, ranks,
                                                  memory))
            stats["val"].append(_run_phase(model, "val", val, epoch, rate, opts, imdb, get_batch, states, ranks))

            if exp_dir is not None:
                if training:
                    # newest first, so that a crash in between leaves a shorter but whole earlier run
                    for old in sorted((e for e in replaced if e > epoch), reverse=True):
                        os.remove(_checkpoint_path(exp_dir, old))
                    replaced = []
                    _save_checkpoint(_checkpoint_path(exp_dir, epoch), epoch, model, states, stats, opts)
                _write_statistics(exp_dir, stats, plot)

            if opts["post_epoch_fn"] is not None:
                state = {"epoch": epoch, "learning_rate": rate, "stats": stats}
                new_rate = opts["post_epoch_fn"](model.net, opts, state)
                if new_rate is not None and not (isinstance(new_rate, numbers.Real) and math.isnan(new_rate)):
                    rates = _learning_rates(new_rate)
                    if all(r == 0 for r in rates):
                        break
    return model.net, stats
