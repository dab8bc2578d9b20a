#!/usr/bin/env python
"""Speed of the cnnx blocks, and of a whole lenet training step, against PyTorch on the same work.

Times forward and forward+backward of every block on the layer shapes of MatConvNet's CIFAR-10
'lenet' (batch 100), dropout on a lenet-sized tensor, a VGG-style 3x3 convolution and AlexNet's
conv1; prints GFLOP/s for each GEMM role of every convolution (forward, data gradient, filter
gradient) and images/second of a lenet training step (forward, backward, SGD with momentum).

Each library x thread-count configuration runs in its own worker subprocess, so neither library's
thread pool can slow the other's timings; the parent hands the workers one case at a time, in
alternating order, with a pause between workers for idle threads to stop spinning. Inside a worker
the kernels of a case run back to back, as in training. See benchmarks/README.md for how to read
the output.

Usage::

    python benchmarks/bench_layers.py                  # 1 and 2 threads, cnnx and PyTorch
    python benchmarks/bench_layers.py --quick          # smoke run: fewer repeats
    python benchmarks/bench_layers.py --only conv,step --threads 2 --json out.json
    python benchmarks/bench_layers.py --no-torch
"""
import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import time
import zlib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------------------------
# The work: layer shapes (MatConvNet spec 6.2 for lenet) and what each case times.
# ----------------------------------------------------------------------------------------------

BATCH = 100
LENET_POOL = {"pool": 3, "stride": 2, "pad": (0, 1, 0, 1)}  # bottom/right pad emulates Caffe's ceil mode
LENET = [
    ("conv1", "conv", {"filters": (5, 5, 3, 32), "pad": 2, "stride": 1}),
    ("pool1", "pool", dict(LENET_POOL, method="max")),
    ("relu1", "relu", {}),
    ("conv2", "conv", {"filters": (5, 5, 32, 32), "pad": 2, "stride": 1}),
    ("relu2", "relu", {}),
    ("pool2", "pool", dict(LENET_POOL, method="avg")),
    ("conv3", "conv", {"filters": (5, 5, 32, 64), "pad": 2, "stride": 1}),
    ("relu3", "relu", {}),
    ("pool3", "pool", dict(LENET_POOL, method="avg")),
    ("conv4", "conv", {"filters": (4, 4, 64, 64), "pad": 0, "stride": 1}),
    ("relu4", "relu", {}),
    ("conv5", "conv", {"filters": (1, 1, 64, 10), "pad": 0, "stride": 1}),
    ("softmaxloss", "loss", {}),
]
LENET_INPUT = (32, 32, 3, BATCH)
LEARNING_RATE = 1e-4  # small: the step repeats on one batch and must stay finite for the whole run
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4

# Variants each kind of case times. Convolutions also time each backward GEMM role on its own.
VARIANTS = {
    "conv": ("fwd", "bwd_data", "bwd_filters", "fwd_bwd", "fwd_cl", "bwd_data_cl", "bwd_filters_cl"),
    "pool": ("fwd", "fwd_bwd"),
    "relu": ("fwd", "fwd_bwd"),
    "dropout": ("fwd", "fwd_bwd"),
    "loss": ("fwd", "fwd_bwd"),
    "step": ("step", "step_cl"),
}
# Targets (at 2 threads): time ratio cnnx/torch at most CONV_TARGET for convolutions (forward+backward)
# and OTHER_BLOCK_TARGET for pooling, ReLU, dropout and the loss; the step: images/s ratio at least STEP_TARGET.
CONV_TARGET = 1.5
OTHER_BLOCK_TARGET = 1.0
STEP_TARGET = 0.8
TARGET_THREADS = 2


def conv_out_shape(in_shape, filters, pad, stride):
    h, w, _, n = in_shape
    fh, fw, _, k = filters
    return ((h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1, k, n)


def pool_out_shape(in_shape, pool, pad, stride):
    h, w, c, n = in_shape
    top, bottom, left, right = pad
    return ((h + top + bottom - pool) // stride + 1, (w + left + right - pool) // stride + 1, c, n)


def out_shape(kind, in_shape, opts):
    if kind == "conv":
        return conv_out_shape(in_shape, opts["filters"], opts["pad"], opts["stride"])
    if kind == "pool":
        return pool_out_shape(in_shape, opts["pool"], opts["pad"], opts["stride"])
    if kind == "loss":
        return ()
    return in_shape


def conv_flops(in_shape, opts):
    """Multiply-adds x 2 of one GEMM role (forward, data gradient and filter gradient cost the same)."""
    yh, yw, k, n = conv_out_shape(in_shape, opts["filters"], opts["pad"], opts["stride"])
    fh, fw, fc, _ = opts["filters"]
    return 2.0 * yh * yw * k * n * fh * fw * fc


def lenet_layers():
    """[(name, kind, opts, input shape)] for the lenet layers, shapes propagated from the input."""
    layers, shape = [], LENET_INPUT
    for name, kind, opts in LENET:
        layers.append((name, kind, opts, shape))
        shape = out_shape(kind, shape, opts)
    return layers


def lenet_step_flops():
    """Convolution FLOPs of one training step: all three roles, except conv1's unneeded data gradient."""
    total = 0.0
    for i, (_, kind, opts, shape) in enumerate(lenet_layers()):
        if kind == "conv":
            total += conv_flops(shape, opts) * (2 if i == 0 else 3)
    return total


def all_cases():
    """{name: case} in run order; a case is a dict with name, kind, input shape, options, label."""
    cases = {}
    for name, kind, opts, shape in lenet_layers():
        cases[name] = {"name": name, "kind": kind, "shape": shape, "opts": opts, "label": f"lenet {name}"}
    cases["dropout"] = {"name": "dropout", "kind": "dropout", "shape": (16, 16, 32, BATCH),
                        "opts": {"rate": 0.5}, "label": "dropout 0.5 (lenet-sized)"}
    cases["vgg_conv"] = {"name": "vgg_conv", "kind": "conv", "shape": (56, 56, 128, 16),
                         "opts": {"filters": (3, 3, 128, 128), "pad": 1, "stride": 1},
                         "label": "VGG 3x3 128->128"}
    cases["alexnet_conv1"] = {"name": "alexnet_conv1", "kind": "conv", "shape": (227, 227, 3, 16),
                              "opts": {"filters": (11, 11, 3, 96), "pad": 0, "stride": 4},
                              "label": "AlexNet conv1 11x11 s4"}
    cases["step"] = {"name": "step", "kind": "step", "shape": LENET_INPUT, "opts": {},
                     "label": "lenet training step"}
    return cases


def select_cases(only):
    """Cases named by --only: kinds (conv, pool, relu, dropout, loss, step), 'lenet', or case names."""
    cases = all_cases()
    if not only:
        return list(cases.values())
    wanted = [w.strip().lower() for w in only.split(",") if w.strip()]
    kinds = {case["kind"] for case in cases.values()}
    lenet_names = {name for name, _, _ in LENET}
    chosen = set()
    for word in wanted:
        word = {"softmaxloss": "loss", "convs": "conv", "pools": "pool"}.get(word, word)
        if word in kinds:
            chosen |= {name for name, case in cases.items() if case["kind"] == word}
        elif word == "lenet":
            chosen |= lenet_names
        elif word in cases:
            chosen.add(word)
        else:
            valid = ", ".join(sorted(kinds | {"lenet"} | set(cases)))
            raise SystemExit(f"bench_layers: --only: unknown name {word!r}. Valid names: {valid}")
    return [case for name, case in cases.items() if name in chosen]


# ----------------------------------------------------------------------------------------------
# Worker side: one library at one thread count, driven by JSON lines on stdin.
# ----------------------------------------------------------------------------------------------


def host_array(name, shape, scale=1.0):
    """Deterministic float32 data for MatConvNet shape (H, W, C, N), stored as C-order (N, C, W, H).

    Its transpose ``a.T`` is the Fortran-ordered (H, W, C, N) array cnnx takes, and ``a`` itself is
    an NCHW tensor for PyTorch holding the same images with H and W swapped. All shapes here are
    square and all paddings symmetric under that swap, so both libraries compute the same numbers
    (up to the transpose), which lets the parent check that they did the same work.
    """
    import numpy as np

    rng = np.random.default_rng(zlib.crc32(f"{name}/{shape}".encode()))
    return (rng.standard_normal(tuple(reversed(shape))) * scale).astype(np.float32)


def host_labels(name, n, classes):
    import numpy as np

    rng = np.random.default_rng(zlib.crc32(f"{name}/labels".encode()))
    return rng.integers(1, classes + 1, size=n)  # MatConvNet's 1-based class labels


def host_filters(prefix, filters):
    """Filters scaled by 1/sqrt(fan-in), so activations keep unit size, and small random biases."""
    fh, fw, fc, k = filters
    return (host_array(prefix + "/f", filters, scale=1.0 / math.sqrt(fh * fw * fc)),
            host_array(prefix + "/b", (k,), scale=0.1))


def host_case_data(case):
    """Every array a case needs, in the host layout of ``host_array``."""
    name, kind, shape, opts = case["name"], case["kind"], case["shape"], case["opts"]
    data = {"x": host_array(name + "/x", shape)}
    if kind == "conv":
        data["f"], data["b"] = host_filters(name, opts["filters"])
    if kind in ("conv", "pool", "relu", "dropout"):
        data["dy"] = host_array(name + "/dy", out_shape(kind, shape, opts))
    if kind == "loss":
        data["c"] = host_labels(name, shape[3], shape[2])
    if kind == "step":
        data["c"] = host_labels(name, shape[3], 10)
        for layer, layer_kind, layer_opts, _ in lenet_layers():
            if layer_kind == "conv":
                data[layer + "/f"], data[layer + "/b"] = host_filters(f"{name}/{layer}", layer_opts["filters"])
    return data


def sums(array):
    """(sum, sum of absolute values) in float64: a layout-independent fingerprint of a result."""
    import numpy as np

    a = np.asarray(array, dtype=np.float64)
    return [float(a.sum()), float(np.abs(a).sum())]


class CnnxWorker:
    """Builds the timed callables of each case from the cnnx blocks."""

    lib = "cnnx"
    unsupported = {"step_cl", "fwd_cl", "bwd_data_cl", "bwd_filters_cl"}  # channels_last is a PyTorch layout

    def __init__(self, threads):
        cnnx = import_cnnx()
        import numpy as np
        import scipy

        cnnx.set_num_threads(threads)
        self.cnnx, self.np = cnnx, np
        self.info = {"cnnx": getattr(cnnx, "__version__", "?"), "path": os.path.dirname(cnnx.__file__),
                     "numpy": np.__version__, "scipy": scipy.__version__, "threads": cnnx.get_num_threads(),
                     "CNNX_ISA": os.environ.get("CNNX_ISA", "auto") or "auto",
                     "fma_ceiling": fma_ceilings(threads), "paths": self.conv_paths()}
        kernels = {path.split(", ")[0].split("/")[1] for path in self.info["paths"].values()}
        self.info["kernel"] = ", ".join(sorted(kernels))

    def conv_paths(self):
        """{conv case: 'algorithm/kernel' of the forward and the backward plan vl_nnconv runs}."""
        np, conv = self.np, self.cnnx.conv
        paths = {}
        for case in all_cases().values():
            if case["kind"] != "conv":
                continue
            fh, fw, fc, k = case["opts"]["filters"]
            x = np.zeros(case["shape"], np.float32, order="F")
            f = np.zeros((fh, fw, fc, k), np.float32, order="F")
            geom = conv.validate_conv(x, f, None, pad=case["opts"]["pad"], stride=case["opts"]["stride"]).geometry
            plans = [conv.plan_conv(geom, np.float32, backward) for backward in (False, True)]
            paths[case["name"]] = ", ".join(f"{p.algorithm}/{p.kernel}" for p in plans)
        return paths

    def prepare(self, case):
        """({variant: callable}, checks) for one case; checks fingerprint the results."""
        data = host_case_data(case)
        arrays = {key: value.T for key, value in data.items()}  # Fortran-ordered (H, W, C, N) views
        return getattr(self, "prepare_" + case["kind"])(case, arrays)

    def prepare_conv(self, case, a):
        conv = self.cnnx.vl_nnconv
        x, f, b, dy = a["x"], a["f"], a["b"], a["dy"]
        opts = {"pad": case["opts"]["pad"], "stride": case["opts"]["stride"]}
        fns = {
            "fwd": lambda: conv(x, f, b, **opts),
            "bwd_data": lambda: conv(x, f, b, dy, no_der_filters=True, no_der_biases=True, **opts),
            "bwd_filters": lambda: conv(x, f, b, dy, no_der_data=True, no_der_biases=True, **opts),
            "fwd_bwd": lambda: (conv(x, f, b, **opts), conv(x, f, b, dy, **opts)),
        }
        y = conv(x, f, b, **opts)
        dx, df, db = conv(x, f, b, dy, **opts)
        return fns, {"y": sums(y), "dx": sums(dx), "df": sums(df), "db": sums(db)}

    def prepare_pool(self, case, a):
        pool = self.cnnx.vl_nnpool
        x, dy, o = a["x"], a["dy"], case["opts"]
        opts = {"stride": o["stride"], "pad": list(o["pad"]), "method": o["method"]}
        fns = {
            "fwd": lambda: pool(x, o["pool"], **opts),
            "fwd_bwd": lambda: (pool(x, o["pool"], **opts), pool(x, o["pool"], dy, **opts)),
        }
        return fns, {"y": sums(pool(x, o["pool"], **opts)), "dx": sums(pool(x, o["pool"], dy, **opts))}

    def prepare_relu(self, case, a):
        relu = self.cnnx.vl_nnrelu
        x, dy = a["x"], a["dy"]
        fns = {"fwd": lambda: relu(x), "fwd_bwd": lambda: (relu(x), relu(x, dy))}
        return fns, {"y": sums(relu(x)), "dx": sums(relu(x, dy))}

    def prepare_dropout(self, case, a):
        dropout = self.cnnx.vl_nndropout
        x, dy, rate = a["x"], a["dy"], case["opts"]["rate"]

        def fwd_bwd():
            y, mask = dropout(x, rate=rate)
            return y, dropout(x, dy, mask=mask)

        fns = {"fwd": lambda: dropout(x, rate=rate), "fwd_bwd": fwd_bwd}
        return fns, {}  # random masks: nothing to compare with PyTorch

    def prepare_loss(self, case, a):
        loss = self.cnnx.vl_nnsoftmaxloss
        x, c = a["x"], a["c"].astype(self.np.float32)
        one = self.np.float32(1)
        fns = {"fwd": lambda: loss(x, c), "fwd_bwd": lambda: (loss(x, c), loss(x, c, one))}
        return fns, {"y": sums(loss(x, c)), "dx": sums(loss(x, c, one))}

    def prepare_step(self, case, a):
        cnnx, np = self.cnnx, self.np
        layers = lenet_layers()
        x, c = a["x"], a["c"].astype(np.float32)
        params = {name: [a[name + "/f"].copy(order="F"), a[name + "/b"].copy()] for name, kind, _, _ in layers
                  if kind == "conv"}
        velocity = {name: [np.zeros_like(p) for p in pair] for name, pair in params.items()}
        one = np.float32(1)

        def forward():
            """The input of every layer, then the loss."""
            acts = [x]
            for name, kind, opts, _ in layers:
                h = acts[-1]
                if kind == "conv":
                    h = cnnx.vl_nnconv(h, *params[name], pad=opts["pad"], stride=opts["stride"])
                elif kind == "pool":
                    h = cnnx.vl_nnpool(h, opts["pool"], stride=opts["stride"], pad=list(opts["pad"]),
                                       method=opts["method"])
                elif kind == "relu":
                    h = cnnx.vl_nnrelu(h)
                else:
                    h = cnnx.vl_nnsoftmaxloss(h, c)
                acts.append(h)
            return acts

        def step():
            acts = forward()
            grads, der = {}, None
            for i in reversed(range(len(layers))):
                name, kind, opts, _ = layers[i]
                h = acts[i]
                if kind == "loss":
                    der = cnnx.vl_nnsoftmaxloss(h, c, one)
                elif kind == "conv":
                    # The network input needs no derivative (PyTorch skips it too).
                    der, df, db = cnnx.vl_nnconv(h, *params[name], der, pad=opts["pad"], stride=opts["stride"],
                                                 no_der_data=(i == 0))
                    grads[name] = (df, db)
                elif kind == "pool":
                    der = cnnx.vl_nnpool(h, opts["pool"], der, stride=opts["stride"], pad=list(opts["pad"]),
                                         method=opts["method"])
                else:
                    der = cnnx.vl_nnrelu(h, der)
            # SGD with momentum and weight decay as in cnn_train (1/batch folded into the rate).
            for name, pair in params.items():
                for w, v, g in zip(pair, velocity[name], grads[name]):
                    g += WEIGHT_DECAY * w
                    v *= MOMENTUM
                    v -= LEARNING_RATE * g
                    w += v
            return acts[-1]

        first_loss = float(forward()[-1])
        return {"step": step}, {"loss": [first_loss, abs(first_loss)]}


def fma_ceilings(threads, rounds=5):
    """{instruction set: GFLOP/s} of cnnx's multiply-add loop on ``threads`` threads, best of
    ``rounds`` short runs, for every instruction set this CPU runs: the machine's FMA ceiling."""
    from cnnx._ext import conv as kernels

    ceilings = {}
    for isa in kernels.supported_isas():
        best = math.inf
        for _ in range(rounds):
            t0 = time.perf_counter()
            flops = kernels.fma_loop(isa, 2_000_000, threads)
            best = min(best, time.perf_counter() - t0)
        ceilings[isa] = round(flops / best / 1e9, 1)
    return ceilings


class TorchWorker:
    """Builds the PyTorch callables: torch.nn.functional in NCHW, autograd for the backward."""

    lib = "torch"
    unsupported = set()

    def __init__(self, threads):
        import numpy as np
        import torch

        torch.set_num_threads(threads)
        self.torch, self.np = torch, np
        self.F = torch.nn.functional
        self.info = {"torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads(),
                     "mkldnn": bool(torch.backends.mkldnn.is_available())}

    def tensor(self, array, grad=False):
        return self.torch.from_numpy(array).requires_grad_(grad)

    def autograd(self, fn, leaves, dy=None):
        """A callable running ``fn`` on the leaves and back-propagating ``dy``, grads reset as zero_grad does."""
        def run():
            for leaf in leaves:
                leaf.grad = None
            out = fn(*leaves)
            out.backward(dy)
            return out
        return run

    def prepare(self, case):
        data = host_case_data(case)
        return getattr(self, "prepare_" + case["kind"])(case, data)

    def prepare_conv(self, case, d):
        torch, F = self.torch, self.F
        x, f, b, dy = (self.tensor(d[k]) for k in ("x", "f", "b", "dy"))
        pad, stride = case["opts"]["pad"], case["opts"]["stride"]

        def backward(mask):
            # The kernel autograd calls, asked for one derivative only.
            return torch.ops.aten.convolution_backward(dy, x, f, [b.shape[0]], [stride] * 2, [pad] * 2, [1, 1],
                                                       False, [0, 0], 1, mask)

        def backward_cl(mask):
            return torch.ops.aten.convolution_backward(dy_cl, x_cl, f_cl, [b.shape[0]], [stride] * 2, [pad] * 2,
                                                       [1, 1], False, [0, 0], 1, mask)

        x_cl, f_cl, dy_cl = (t.contiguous(memory_format=torch.channels_last) for t in (x, f, dy))
        leaves = [self.tensor(d[k], grad=True) for k in ("x", "f", "b")]
        fns = {
            "fwd": lambda: F.conv2d(x, f, b, stride=stride, padding=pad),
            "bwd_data": lambda: backward([True, False, False]),
            "bwd_filters": lambda: backward([False, True, False]),
            "fwd_bwd": self.autograd(lambda x_, f_, b_: F.conv2d(x_, f_, b_, stride=stride, padding=pad), leaves, dy),
            "fwd_cl": lambda: F.conv2d(x_cl, f_cl, b, stride=stride, padding=pad),
            "bwd_data_cl": lambda: backward_cl([True, False, False]),
            "bwd_filters_cl": lambda: backward_cl([False, True, False]),
        }
        y = fns["fwd_bwd"]()
        checks = {"y": sums(y.detach().numpy())}
        checks.update({name: sums(leaf.grad.numpy()) for name, leaf in zip(("dx", "df", "db"), leaves)})
        return fns, checks

    def pool_fn(self, opts, in_shape):
        """The torch.nn.functional pooling matching vl_nnpool's options (padding cells ignored)."""
        F = self.F
        top, bottom, left, right = opts["pad"]
        if top == bottom == left == right:
            padding, ceil_mode = top, False
        elif top == left == 0 and bottom == right == 1:
            # MatConvNet's [0 1 0 1] adds a clipped window at the bottom/right, as ceil_mode does.
            padding, ceil_mode = 0, True
        else:
            raise ValueError(f"no PyTorch pooling matches pad {opts['pad']}")
        size, stride = opts["pool"], opts["stride"]
        rounding = math.ceil if ceil_mode else math.floor
        torch_size = int(rounding((in_shape[0] + 2 * padding - size) / stride)) + 1
        if torch_size != pool_out_shape(in_shape, size, opts["pad"], stride)[0]:
            raise ValueError(f"PyTorch pooling would give {torch_size} rows, not MatConvNet's")
        if opts["method"] == "max":
            return lambda x: F.max_pool2d(x, size, stride, padding, ceil_mode=ceil_mode)
        return lambda x: F.avg_pool2d(x, size, stride, padding, ceil_mode=ceil_mode, count_include_pad=False)

    def prepare_unary(self, fn, d, checks=True):
        x, dy = self.tensor(d["x"]), self.tensor(d["dy"])
        leaf = self.tensor(d["x"], grad=True)
        fns = {"fwd": lambda: fn(x), "fwd_bwd": self.autograd(fn, [leaf], dy)}
        y = fns["fwd_bwd"]()
        return fns, ({"y": sums(y.detach().numpy()), "dx": sums(leaf.grad.numpy())} if checks else {})

    def prepare_pool(self, case, d):
        return self.prepare_unary(self.pool_fn(case["opts"], case["shape"]), d)

    def prepare_relu(self, case, d):
        return self.prepare_unary(self.F.relu, d)

    def prepare_dropout(self, case, d):
        rate = case["opts"]["rate"]
        return self.prepare_unary(lambda x: self.F.dropout(x, rate, training=True), d, checks=False)

    def prepare_loss(self, case, d):
        F = self.F
        labels = self.torch.from_numpy(d["c"] - 1)  # 0-based
        x = self.tensor(d["x"])
        leaf = self.tensor(d["x"], grad=True)

        def loss(inp):
            return F.cross_entropy(inp.flatten(1), labels, reduction="sum")  # MatConvNet sums over images

        fns = {"fwd": lambda: loss(x), "fwd_bwd": self.autograd(loss, [leaf])}
        y = fns["fwd_bwd"]()
        return fns, {"y": sums(y.detach().numpy()), "dx": sums(leaf.grad.numpy())}

    def prepare_step(self, case, d):
        torch, F = self.torch, self.F
        labels = torch.from_numpy(d["c"] - 1)
        layers = lenet_layers()

        def network(memory_format):
            """(step callable, loss of the untrained network) with tensors in ``memory_format``."""
            x = torch.from_numpy(d["x"]).contiguous(memory_format=memory_format)
            params = {}
            for name, kind, _, _ in layers:
                if kind == "conv":
                    f = torch.from_numpy(d[name + "/f"].copy()).contiguous(memory_format=memory_format)
                    b = torch.from_numpy(d[name + "/b"].copy())
                    params[name] = (f.requires_grad_(True), b.requires_grad_(True))
            optimizer = torch.optim.SGD([p for pair in params.values() for p in pair], lr=LEARNING_RATE,
                                        momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
            pools = {name: self.pool_fn(opts, shape) for name, kind, opts, shape in layers if kind == "pool"}

            def forward():
                h = x
                for name, kind, opts, _ in layers:
                    if kind == "conv":
                        h = F.conv2d(h, *params[name], stride=opts["stride"], padding=opts["pad"])
                    elif kind == "pool":
                        h = pools[name](h)
                    elif kind == "relu":
                        h = F.relu(h)
                    else:
                        h = F.cross_entropy(h.flatten(1), labels, reduction="sum")
                return h

            def step():
                optimizer.zero_grad(set_to_none=True)
                loss = forward()
                loss.backward()
                optimizer.step()
                return loss

            with torch.no_grad():
                first_loss = float(forward())
            return step, first_loss

        step, first_loss = network(torch.contiguous_format)
        step_cl, _ = network(torch.channels_last)
        return {"step": step, "step_cl": step_cl}, {"loss": [first_loss, abs(first_loss)]}


WORKERS = {"cnnx": CnnxWorker, "torch": TorchWorker}


def variants_of(lib, kind):
    """The variants ``lib`` times for a case of ``kind``."""
    return [v for v in VARIANTS[kind] if v not in WORKERS[lib].unsupported]


def import_cnnx():
    """Import cnnx: installed, or else the in-place build of this checkout."""
    try:
        import cnnx
        return cnnx
    except ImportError as first:
        if REPO_ROOT not in sys.path:
            sys.path.append(REPO_ROOT)
        for name in [m for m in sys.modules if m == "cnnx" or m.startswith("cnnx.")]:
            del sys.modules[name]
        try:
            import cnnx
            return cnnx
        except ImportError as second:
            raise ImportError(
                f"cnnx is not importable (installed: {first}; from {REPO_ROOT}: {second}). "
                f"Build it with `pip install .` (or `python setup.py build_ext --inplace`) in {REPO_ROOT}."
            ) from None


def measure(fn, samples, min_time, warmup):
    """Per-call seconds of ``samples`` back-to-back samples, each averaging enough calls to last min_time.

    The warm-up runs first, back to back with the samples, so caches, thread pools and lazily built
    kernels are hot, as they are in training.
    """
    start = time.perf_counter()
    calls, last = 0, 0.0
    while calls < 2 or time.perf_counter() - start < warmup:
        t0 = time.perf_counter()
        fn()
        last = time.perf_counter() - t0
        calls += 1
    inner = max(1, min(100_000, math.ceil(min_time / max(last, 1e-7))))
    result = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        result.append((time.perf_counter() - t0) / inner)
    return result, inner


def worker_main(lib, threads):
    """Serve 'run' requests (one JSON line each) until 'quit'; replies go to the real stdout."""
    reply_stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the libraries print goes to stderr, not into the replies
    sys.stdout = sys.stderr

    def reply(obj):
        reply_stream.write(json.dumps(obj) + "\n")
        reply_stream.flush()

    try:
        worker = WORKERS[lib](threads)
    except Exception as exc:  # report any start-up failure to the parent, which explains it
        reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    reply({"ok": True, "info": worker.info})
    cases = all_cases()
    prepared_name, fns, prepare_error = None, {}, None
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        case = cases[request["case"]]
        results, new_checks = {}, None
        if case["name"] != prepared_name:  # the parent sends all rounds of one case in a row
            prepared_name, fns, prepare_error = case["name"], {}, None
            try:
                fns, new_checks = worker.prepare(case)
            except Exception as exc:
                prepare_error = f"{type(exc).__name__}: {exc}".strip()
        for variant in variants_of(lib, case["kind"]):
            if prepare_error:
                results[variant] = {"error": prepare_error}
                continue
            gc.collect()
            gc.disable()
            try:
                values, inner = measure(fns[variant], request["samples"], request["min_time"], request["warmup"])
                results[variant] = {"samples": values, "inner": inner}
            except Exception as exc:
                results[variant] = {"error": f"{type(exc).__name__}: {exc}".strip()}
            finally:
                gc.enable()
        reply({"ok": True, "case": case["name"], "results": results, "checks": new_checks})
    return 0


# ----------------------------------------------------------------------------------------------
# Parent side: start the workers, alternate them case by case, collect and print.
# ----------------------------------------------------------------------------------------------


class Worker:
    """A worker subprocess for one library at one thread count, spoken to in JSON lines."""

    def __init__(self, lib, threads, timeout):
        self.lib, self.threads, self.timeout = lib, threads, timeout
        self.key = f"{lib}@{threads}"
        self.info, self.error, self.starts = None, None, 0
        self.start()

    def start(self):
        """Start (or restart) the subprocess; on failure ``error`` says why."""
        env = dict(os.environ, CNNX_NUM_THREADS=str(self.threads), OMP_NUM_THREADS=str(self.threads),
                   MKL_NUM_THREADS=str(self.threads))
        command = [sys.executable, os.path.abspath(__file__), "--worker", self.lib, "--threads", str(self.threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        self.buffer, self.error = b"", None
        self.starts += 1
        hello = self.receive(timeout=120)
        if hello is not None and not hello.get("ok"):
            self.error = hello.get("error", "worker failed to start")
            self.close()
        elif hello is not None:
            self.info = hello["info"]

    @property
    def alive(self):
        return self.error is None

    def receive(self, timeout):
        """The next JSON line from the worker, or None on timeout or exit (the worker is then stopped)."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], left)[0] if left > 0 else []
            chunk = os.read(fd, 1 << 16) if ready else b""
            if not chunk:
                self.kill()
                self.error = (f"no reply within {timeout:g} s" if not ready
                              else f"worker exited with code {self.process.returncode}")
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, case_name, settings):
        """The worker's reply for one case, or None if it died (``error`` says how)."""
        request = dict(settings, op="run", case=case_name)
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
        except BrokenPipeError:
            self.kill()
            self.error = f"worker exited with code {self.process.returncode}"
            return None
        return self.receive(self.timeout)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(b'{"op": "quit"}\n')
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()


MAX_STARTS = 4  # a worker that crashes is restarted for the next case, this many times in all


def run_all(cases, workers, settings, rounds, settle):
    """{worker key: {case: {variant: entry}}} and the checks of each worker.

    An entry holds 'samples' (seconds per call), their 'median' and 'min', 'foreign_cores' (the most
    cores other processes kept busy during a round), 'contended' (whether that left the worker short
    of cores in some round) and 'error' if a round failed.
    """
    timings = {w.key: {} for w in workers}
    checks = {w.key: {} for w in workers}
    for number, case in enumerate(cases, 1):
        print(f"[{number}/{len(cases)}] {case['label']}", file=sys.stderr, flush=True)
        for worker in workers:
            if not worker.alive and worker.info is not None and worker.starts < MAX_STARTS:
                worker.start()  # it crashed on an earlier case: give this case a fresh process
        for round_index in range(rounds):
            order = workers if round_index % 2 == 0 else workers[::-1]
            for worker in order:
                if not worker.alive:
                    continue
                time.sleep(settle)  # let the previous worker's idle threads stop spinning
                foreign = ForeignLoad(worker)
                reply = worker.run(case["name"], settings)
                foreign_cores = foreign.cores()
                store = timings[worker.key].setdefault(case["name"], {})
                if reply is None:
                    print(f"  {worker.key} failed on {case['name']}: {worker.error}", file=sys.stderr, flush=True)
                    for variant in variants_of(worker.lib, case["kind"]):
                        store.setdefault(variant, {"samples": []})["error"] = worker.error
                    continue
                if reply.get("checks"):
                    checks[worker.key][case["name"]] = reply["checks"]
                for variant, result in reply["results"].items():
                    entry = store.setdefault(variant, {"samples": []})
                    if "error" in result:
                        entry["error"] = result["error"]
                    else:
                        entry["samples"].extend(result["samples"])
                        entry["inner"] = result["inner"]
                        if foreign_cores is not None:
                            entry["foreign_cores"] = max(foreign_cores, entry.get("foreign_cores", 0.0))
                            entry["contended"] = entry.get("contended", False) or foreign.contended(foreign_cores)
    for worker in workers:
        for entry in (e for per_case in timings[worker.key].values() for e in per_case.values()):
            if entry["samples"]:
                entry["median"] = statistics.median(entry["samples"])
                entry["min"] = min(entry["samples"])
    return timings, checks


def compare_checks(checks, cases, threads):
    """(mismatches, names of the cases compared): cnnx's and PyTorch's result fingerprints side by side."""
    problems, compared = [], set()
    for n in threads:
        ours, theirs = checks.get(f"cnnx@{n}", {}), checks.get(f"torch@{n}", {})
        for case in cases:
            a, b = ours.get(case["name"]), theirs.get(case["name"])
            if not a or not b:
                continue
            compared.add(case["name"])
            for key in a:
                (s1, abs1), (s2, abs2) = a[key], b.get(key, [math.nan, math.nan])
                scale = max(abs1, abs2, 1e-30)
                if not (abs(s1 - s2) <= 1e-4 * scale and abs(abs1 - abs2) <= 1e-4 * scale):
                    problems.append(f"{case['name']} {key} at {n} thread(s): cnnx sum {s1:.6g} (|.| {abs1:.6g}), "
                                    f"torch sum {s2:.6g} (|.| {abs2:.6g})")
    return problems, sorted(compared)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def value(timings, key, case, variant, stat):
    entry = timings.get(key, {}).get(case, {}).get(variant)
    return entry.get(stat) if entry else None


def busy_mark(timings, key, case, variant):
    """'*' when other processes left the worker short of cores while this was measured."""
    entry = timings.get(key, {}).get(case, {}).get(variant) or {}
    return "*" if entry.get("contended") else ""


def time_cell(timings, key, case, variant):
    """'median (min)' in ms, or why there is no time."""
    entry = timings.get(key, {}).get(case, {}).get(variant)
    if not entry or "median" not in entry:
        return "error" if entry and entry.get("error") else "n/a"
    return f"{fmt(entry['median'] * 1e3)} ({fmt(entry['min'] * 1e3)}){busy_mark(timings, key, case, variant)}"


def fmt(x, digits=3):
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{decimals}f}"


def ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def mark(passed):
    return "n/a" if passed is None else ("pass" if passed else "FAIL")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def shape_text(shape):
    return "x".join(str(s) for s in shape)


def layer_rows(cases, timings, n, stat, use_torch, verdicts):
    rows = []
    for case in (c for c in cases if c["kind"] != "step"):
        name, kind = case["name"], case["kind"]
        row = [case["label"], shape_text(case["shape"])]
        ratios = {}
        for variant in ("fwd", "fwd_bwd"):
            times = {}
            for lib in ("cnnx", "torch") if use_torch else ("cnnx",):
                key = f"{lib}@{n}"
                times[lib] = value(timings, key, name, variant, stat)
                row.append(time_cell(timings, key, name, variant))
            if use_torch:
                ratios[variant] = ratio(times["cnnx"], times["torch"])
                row.append(fmt(ratios[variant]))
        if use_torch:
            if kind == "conv":
                checked, limit = ["fwd_bwd"], CONV_TARGET
                target = f"f+b <= {CONV_TARGET}x"
            else:
                checked, limit = ["fwd", "fwd_bwd"], OTHER_BLOCK_TARGET
                target = f"fwd, f+b <= {OTHER_BLOCK_TARGET}x"
            values = [ratios[v] for v in checked]
            passed = None if any(v is None for v in values) else all(v <= limit for v in values)
            verdicts.append({"threads": n, "case": name, "target": target, "ratios": values, "passed": passed})
            row += [target, mark(passed)]
        rows.append(row)
    header = ["layer", "input HxWxCxN", "cnnx fwd ms"]
    if use_torch:
        header += ["torch fwd ms", "fwd ratio"]
    header += ["cnnx fwd+bwd ms"]
    if use_torch:
        header += ["torch fwd+bwd ms", "f+b ratio", "target", ""]
    return header, rows


def ceiling_of(workers, n):
    """(instruction set, GFLOP/s): the FMA ceiling the cnnx worker at ``n`` threads measured for the
    instruction set its convolution kernels ran (the widest the CPU runs, unless CNNX_ISA forced
    another)."""
    worker = next((w for w in workers if w.key == f"cnnx@{n}" and w.info), None)
    ceilings = worker.info.get("fma_ceiling", {}) if worker else {}
    ran = worker.info.get("kernel", "").split(", ") if worker else []
    isa = next((isa for isa in ("avx512", "avx2", "generic") if isa in ceilings and isa in ran),
               next((isa for isa in ("avx512", "avx2", "generic") if isa in ceilings), None))
    return isa, ceilings.get(isa)


def gemm_rows(cases, timings, n, stat, use_torch, workers):
    rows = []
    isa, ceiling = ceiling_of(workers, n)
    paths = next((w.info.get("paths", {}) for w in workers if w.key == f"cnnx@{n}" and w.info), {})
    roles = [("fwd", "forward"), ("bwd_data", "data grad"), ("bwd_filters", "filter grad")]
    for case in (c for c in cases if c["kind"] == "conv"):
        flops = conv_flops(case["shape"], case["opts"])
        fh, fw, fc, k = case["opts"]["filters"]
        row = [case["label"], f"{fh}x{fw} {fc}->{k} on {case['shape'][0]}x{case['shape'][1]}, N={case['shape'][3]}",
               fmt(flops / 1e9), paths.get(case["name"], "?")]
        for variant, _ in roles:
            cells = [("cnnx", variant)] + ([("torch", variant), ("torch", variant + "_cl")] if use_torch else [])
            for lib, timed in cells:
                key = f"{lib}@{n}"
                t = value(timings, key, case["name"], timed, stat)
                gflops = flops / t / 1e9 if t else None
                cell = fmt(gflops) + busy_mark(timings, key, case["name"], timed) if t else "n/a"
                if lib == "cnnx" and gflops and ceiling:
                    cell += f" ({100 * gflops / ceiling:.0f}%)"
                row.append(cell)
        rows.append(row)
    header = ["conv", "shape", "GFLOP per role", "cnnx plan (fwd, bwd)"]
    for _, role in roles:
        header += [f"cnnx {role} (% of {isa} FMA ceiling)"] + (
            [f"torch {role} NCHW", f"torch {role} channels_last"] if use_torch else [])
    return header, rows


def step_rows(timings, threads, stat, use_torch, verdicts):
    rows = []
    flops = lenet_step_flops()
    for n in threads:
        t = value(timings, f"cnnx@{n}", "step", "step", stat)
        ours = BATCH / t if t else None
        busy = busy_mark(timings, f"cnnx@{n}", "step", "step")
        row = [n, fmt(t * 1e3) + busy if t else "n/a", fmt(ours) + busy if ours else "n/a",
               fmt(flops / t / 1e9) + busy if t else "n/a"]
        if use_torch:
            t_torch = value(timings, f"torch@{n}", "step", "step", stat)
            t_cl = value(timings, f"torch@{n}", "step", "step_cl", stat)
            theirs = BATCH / t_torch if t_torch else None
            speed_ratio = ratio(ours, theirs)
            passed = None if speed_ratio is None else speed_ratio >= STEP_TARGET
            verdicts.append({"threads": n, "case": "step", "target": f"img/s >= {STEP_TARGET}x torch",
                             "ratios": [speed_ratio], "passed": passed})
            busy = busy_mark(timings, f"torch@{n}", "step", "step")
            row += [fmt(theirs) + busy if theirs else "n/a", fmt(speed_ratio),
                    fmt(BATCH / t_cl) + busy if t_cl else "n/a", f">= {STEP_TARGET}x", mark(passed)]
        rows.append(row)
    header = ["threads", "cnnx ms/step", "cnnx img/s", "cnnx conv GFLOP/s"]
    if use_torch:
        header += ["torch img/s (NCHW)", "cnnx/torch", "torch channels_last img/s", "target", ""]
    return header, rows


def machine_text():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {usable_cores()} usable core(s), Python {platform.python_version()}"


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_text():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# A timing is marked as contended when other processes used more cores than the worker left spare,
# plus this share of all cores.
FOREIGN_SLACK = 0.1


def cpu_busy_seconds():
    """CPU seconds all cores have spent busy (or stolen by the hypervisor) since boot; None off Linux."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """CPU seconds process ``pid`` (all its threads) has used; None off Linux or once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """How many cores other processes kept busy while one worker was being timed."""

    def __init__(self, worker):
        self.pid, self.threads = worker.process.pid, worker.threads
        self.start = (time.monotonic(), cpu_busy_seconds(), process_cpu_seconds(self.pid))

    def cores(self):
        """Average number of cores used by other processes since construction, or None if unknown."""
        end = (time.monotonic(), cpu_busy_seconds(), process_cpu_seconds(self.pid))
        if None in self.start or None in end or end[0] <= self.start[0]:
            return None
        foreign = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, foreign) / (end[0] - self.start[0])

    def contended(self, cores):
        """Whether ``cores`` busy elsewhere left fewer cores than the worker's threads need."""
        return cores > usable_cores() - self.threads + FOREIGN_SLACK * usable_cores()


def contention_summary(timings):
    """A warning line when other processes competed for the cores during some timings."""
    entries = [entry for per_case in timings.values() for per_variant in per_case.values()
               for entry in per_variant.values() if "foreign_cores" in entry]
    marked = [entry for entry in entries if entry["contended"]]
    if not marked:
        return None
    worst = max(entry["foreign_cores"] for entry in marked)
    return (f"- WARNING: other processes competed for the cores during {len(marked)} of {len(entries)} timings "
            f"(marked *; up to {worst:.1f} of {usable_cores()} cores busy elsewhere): those timings are "
            "unreliable. Rerun on a quiet machine.")


def report(cases, timings, checks, workers, args, settings, started, load_before):
    threads, stat = args.threads, args.stat
    use_torch = any(w.lib == "torch" and w.info for w in workers)
    verdicts, out = [], []
    out.append("# cnnx layer benchmark")
    out.append("")
    out.append(f"- machine: {machine_text()}; load average before {load_before}, after {load_text()}")
    for worker in workers:
        shown = {k: v for k, v in (worker.info or {}).items() if k != "paths"}
        status = ", ".join(f"{k} {v}" for k, v in shown.items()) if worker.info else f"FAILED: {worker.error}"
        out.append(f"- worker {worker.key}: {status}")
    out.append(f"- {args.rounds} alternating round(s) x {settings['samples']} samples per case; each sample "
               f"averages back-to-back calls lasting >= {settings['min_time'] * 1e3:g} ms. Times are "
               f"'median (min)' in ms; GFLOP/s{' and ratios' if use_torch else ''} use the {stat}.")
    if use_torch:
        out.append("- Ratios are cnnx/torch times (lower is better), except the step's images/s ratio "
                   "(higher is better).")
    if args.quick:
        out.append("- --quick run: few samples, expect noise of 10-20%.")
    warning = contention_summary(timings)
    if warning:
        out.append(warning)
    layer_cases = [c for c in cases if c["kind"] != "step"]
    for n in threads:
        if layer_cases:
            out += ["", f"## Layers, {n} thread(s)", ""]
            out.append(table(*layer_rows(cases, timings, n, stat, use_torch, verdicts)))
        if any(c["kind"] == "conv" for c in cases):
            out += ["", f"## Convolution GFLOP/s per GEMM role, {n} thread(s)", ""]
            isa, ceiling = ceiling_of(workers, n)
            if ceiling:
                out.append(f"FMA ceiling at {n} thread(s), measured by cnnx's {isa} multiply-add loop: "
                           f"{ceiling:g} GFLOP/s.")
                out.append("")
            out.append(table(*gemm_rows(cases, timings, n, stat, use_torch, workers)))
    if any(c["kind"] == "step" for c in cases):
        out += ["", f"## Lenet training step (batch {BATCH}: forward, backward, SGD momentum; "
                    f"{lenet_step_flops() / 1e9:.2f} conv GFLOP)", ""]
        out.append(table(*step_rows(timings, threads, stat, use_torch, verdicts)))
    if use_torch:
        official = [v for v in verdicts if v["threads"] == TARGET_THREADS]
        out += ["", f"## Targets (at {TARGET_THREADS} threads; markers at other thread counts are informational)", ""]
        if not official:
            out.append(f"- not measured: add {TARGET_THREADS} to --threads")
        else:
            passed = [v for v in official if v["passed"]]
            failed = [v for v in official if v["passed"] is False]
            missing = [v for v in official if v["passed"] is None]
            out.append(f"- {len(passed)} of {len(official)} met")
            for v in failed:
                out.append(f"- FAIL {v['case']}: {v['target']}, got {', '.join(fmt(r) for r in v['ratios'])}")
            for v in missing:
                out.append(f"- not measured: {v['case']} ({v['target']})")
        problems, compared = compare_checks(checks, cases, threads)
        out += ["", "## Same-work check", ""]
        out += [f"- MISMATCH {p}" for p in problems]
        if not problems:
            out.append(f"- cnnx and PyTorch results agree (sums within 1e-4) on: {', '.join(compared) or 'nothing'}")
    errors = sorted({(key, case, variant, entry["error"]) for key, per_case in timings.items()
                     for case, per_variant in per_case.items() for variant, entry in per_variant.items()
                     if entry.get("error")})
    if errors:
        out += ["", "## Errors", ""]
        out += [f"- {key} {case} {variant}: {message}" for key, case, variant, message in errors]
    out.append("")
    out.append(f"Total time {time.monotonic() - started:.0f} s.")
    return "\n".join(out), verdicts


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated: conv, pool, relu, dropout, loss, step, "
                                                   "lenet, or case names such as conv2, vgg_conv, alexnet_conv1")
    parser.add_argument("--no-torch", action="store_true", help="time cnnx only")
    parser.add_argument("--json", metavar="FILE", help="also write all samples and summaries as JSON")
    parser.add_argument("--rounds", type=int, help="alternating rounds per case (default 3; 2 with --quick)")
    parser.add_argument("--samples", type=int, help="samples per case per round (default 7; 4 with --quick)")
    parser.add_argument("--stat", choices=("median", "min"), default="min",
                        help="statistic for ratios and GFLOP/s (default min: robust to other load)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not args.threads or min(args.threads) < 1:
        parser.error("--threads must list positive integers")
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.samples = args.samples or (4 if args.quick else 7)
    if args.rounds < 1 or args.samples < 1:
        parser.error("--rounds and --samples must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads[0])
    cases = select_cases(args.only)
    settings = {"samples": args.samples, "min_time": 0.002 if args.quick else 0.01,
                "warmup": 0.03 if args.quick else 0.1}
    settle = 0.2 if args.quick else 0.3
    started, load_before = time.monotonic(), load_text()
    libs = ["cnnx"]
    torch_note = None
    if not args.no_torch:
        if importlib.util.find_spec("torch") is None:
            torch_note = "PyTorch is not installed: timing cnnx only."
        else:
            libs.append("torch")
    if torch_note:
        print(torch_note, file=sys.stderr)
    workers = []
    try:
        for n in args.threads:
            for lib in libs:
                worker = Worker(lib, n, timeout=600)
                workers.append(worker)
                if not worker.alive:
                    if lib == "cnnx":
                        print(f"bench_layers: cannot run cnnx: {worker.error}", file=sys.stderr)
                        return 2
                    print(f"bench_layers: PyTorch worker {worker.key} failed ({worker.error}); going on without it.",
                          file=sys.stderr)
        timings, checks = run_all(cases, workers, settings, args.rounds, settle)
    finally:
        for worker in workers:
            worker.close()
    text, verdicts = report(cases, timings, checks, workers, args, settings, started, load_before)
    print(text)
    if args.json:
        document = {
            "machine": machine_text(), "settings": dict(settings, rounds=args.rounds, stat=args.stat,
                                                        threads=args.threads, quick=args.quick),
            "workers": {w.key: w.info or {"error": w.error} for w in workers},
            "cases": {c["name"]: {"kind": c["kind"], "shape": c["shape"], "opts": c["opts"]} for c in cases},
            "timings": timings, "checks": checks, "targets": verdicts,
        }
        with open(args.json, "w") as handle:
            json.dump(document, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
