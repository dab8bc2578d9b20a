"""Training speed of MatConvNet's CIFAR-10 lenet or NIN: cnnx (SimpleNN + cnn_train) against PyTorch.

    python benchmarks/bench_train.py [--model lenet|nin] [--quick] [--repeats R] [--batches B]
    python benchmarks/bench_train.py --cifar-run [--model lenet|nin] [--threads T]
    python benchmarks/bench_train.py --mpi [--model lenet|nin] [--quick] [--repeats R] [--batches B]

Each configuration (library x threads) runs in its own subprocess, configurations alternate, and
each is repeated; the table shows the best and the median images/second of the timed epoch, the
peak resident memory of the process while it trains and how far that is above the memory it held
just before training (Linux; elsewhere the peak of the whole process), and the ratio
cnnx / PyTorch. The work is one training step per batch of 100 random 32x32x3 images: forward,
backward and the SGD-with-momentum update of cnn_train, with the model's weight decay, the first
learning rate of its schedule and its per-layer learning-rate multipliers.

``--model`` chooses the network (default lenet): ``lenet`` is ``cifar_lenet`` (weight decay 1e-4,
learning rate 0.05), ``nin`` is ``cifar_nin``, the Network in Network (weight decay 5e-4, learning
rate 0.002, dropout 0.5 after its first two blocks).

cnnx runs ``cnnx.train.cnn_train`` (two epochs of B batches; the second is timed, so it includes
the trainer's own work: batch fetching, error statistics, the update). PyTorch runs the same
layers with the same initialisation and multipliers (lenet's 3x3 stride-2 pooling padded
``[0 1 0 1]`` is PyTorch's ceil-mode output size with the padded cells excluded; NIN's unpadded
pooling is PyTorch's default floor mode; NIN's dropout is ``torch.nn.Dropout``, scaled as
MatConvNet's), summed softmax loss, ``torch.optim.SGD`` with momentum 0.9, in the default NCHW
layout and in channels_last; it is skipped when torch is not installed.

``--mpi`` measures data-parallel training (``cnn_train`` over MPI, the ``mpi`` extra): the same
cnnx epoch on 1 process with 1 thread, 1 process with 2 threads and ``mpiexec -n 2`` ranks
with 1 thread each, the parallel efficiency of each against 1 thread (img/s over twice the 1-thread
figure) and the bytes one step's exchange brings into each rank (cnn_train's report on rank 0).

``--dagnn`` adds the same network as a DagNN (``cifar_dagnn``: its error output included) trained
through the same ``cnn_train``.

For cnnx the table also shows the share of the timed epoch spent outside the convolution kernels
(the entries of ``cnnx._ext.conv``, timed around each call): the other kernels, the graphs, the
trainer and the update; and below it the GFLOP/s of the convolutions of the best run.

``--cifar-run`` measures instead how long the CIFAR-10 example's default run of the model takes: one
epoch of ``examples/cifar10.py``'s work at its real size (50,000 training and 10,000 test images of
32x32x3, random but preprocessed-sized, with the left-right flips of ``cifar10.get_batch``, the
model's schedule, batch 100), through ``cnn_train`` with a checkpoint, ``stats.json`` and
``net-train.png`` written as the example does; then the time of the schedule's epochs (45 for
lenet, 103 for NIN; every epoch costs the same) and what redrawing their plot costs, as a share of
an epoch.
"""
import argparse
import contextlib
import functools
import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

BATCH = 100
MOMENTUM = 0.9
# Per model (cnnx.models' cifar_<model>): the first learning rate of its schedule and its weight decay
# (trainOpts), the learningRate multipliers of its convolutions' [filters, biases], and the factor
# that scales them in its last convolution.
MODELS = {
    "lenet": {"learning_rate": 0.05, "weight_decay": 1e-4, "multipliers": (0.1, 2.0), "last_scale": 0.1},
    "nin": {"learning_rate": 0.002, "weight_decay": 5e-4, "multipliers": (1.0, 10.0), "last_scale": 0.001},
}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_mb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def reset_peak_rss():
    """Start a new peak-memory window; return the resident memory now (MB)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # Linux: reset the peak resident set size (VmHWM) to the current one
        return _status_mb("VmRSS")
    except OSError:  # not Linux: the peak then covers the whole process
        return peak_rss_mb()


def peak_rss_mb():
    try:
        return _status_mb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def random_batches(num_batches, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((32, 32, 3, num_batches * BATCH), dtype=np.float32)
    labels = rng.integers(1, 11, num_batches * BATCH).astype(np.float32)
    return np.asfortranarray(images), labels


def import_cnnx():
    """Import cnnx: installed, or else the in-place build of this checkout."""
    try:
        import cnnx
    except ImportError:
        sys.path.append(REPO_ROOT)
        import cnnx
    return cnnx


def cnnx_net(model):
    """The SimpleNN network ``cnnx.models.cifar_<model>()``."""
    import_cnnx()
    from cnnx import models

    return getattr(models, f"cifar_{model}")()


def time_conv_kernels():
    """Wrap every entry of cnnx._ext.conv in a timer; returns the list whose one item sums their seconds."""
    from cnnx._ext import conv

    spent = [0.0]

    def timed(entry):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return entry(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return call

    for name in dir(conv):
        if not name.startswith("_") and callable(getattr(conv, name)):
            setattr(conv, name, timed(getattr(conv, name)))
    return spent


def step_conv_flops(net):
    """Convolution FLOPs of one training step of a SimpleNN net at batch BATCH: forward, data and
    filter gradient (2 x multiply-adds each), less the first layer's data gradient, which cnn_train
    does not compute."""
    from cnnx.simplenn import vl_simplenn_display

    with contextlib.redirect_stdout(io.StringIO()):  # only its data sizes are wanted, not its table
        sizes = vl_simplenn_display(net, batch_size=BATCH)["dataSize"]
    total = 0.0
    for l, layer in enumerate(net["layers"]):
        if layer["type"] == "conv":
            fh, fw, fc, _ = layer["weights"][0].shape
            yh, yw, k, n = sizes[:, l + 1]
            total += 2.0 * yh * yw * k * n * fh * fw * fc * (2 if l == 0 else 3)
    return total


def run_cnnx(threads, num_batches, model, progress=False, dagnn=False):
    """Images/second of the second (timed) epoch, the resident memory before it, the share of that
    epoch spent outside the convolution kernels, and the convolution FLOPs of one step."""
    cnnx = import_cnnx()
    from cnnx.models import cifar_dagnn
    from cnnx.train import cnn_train

    cnnx.set_num_threads(threads)
    images, labels = random_batches(num_batches)
    imdb = {"images": {"data": images, "labels": labels}}

    def get_batch(db, batch):
        x, y = np.asfortranarray(db["images"]["data"][:, :, :, batch]), db["images"]["labels"][batch]
        return {"input": x, "label": y} if dagnn else (x, y)

    simplenn = cnnx_net(model)
    net = cifar_dagnn(simplenn) if dagnn else simplenn
    conv_seconds = time_conv_kernels()

    def start_timed_epoch(net, opts, state):
        if state["epoch"] == 1:  # the warm-up is over
            conv_seconds[0] = 0.0

    before = reset_peak_rss()
    _, stats = cnn_train(
        net, imdb, get_batch, exp_dir=None, batch_size=BATCH, num_epochs=2,
        learning_rate=MODELS[model]["learning_rate"], weight_decay=MODELS[model]["weight_decay"],
        momentum=MOMENTUM, train=np.arange(images.shape[3]), val=[], progress=progress,
        plot_statistics=False, post_epoch_fn=start_timed_epoch)
    timed = stats["train"][-1]
    return (timed["num"] / timed["time"], before, 1.0 - conv_seconds[0] / timed["time"],
            step_conv_flops(simplenn))


def cifar_run(model, threads):
    """Time one epoch of the CIFAR-10 example at full size; print the projection to its schedule."""
    import tempfile

    cnnx = import_cnnx()
    from cnnx.datasets import cifar10
    from cnnx.train import _Plot, cnn_train

    cnnx.set_num_threads(threads)
    rng = np.random.default_rng(0)
    sets = np.concatenate([np.ones(50000, np.uint8), np.full(10000, 3, np.uint8)])
    data = np.asfortranarray(rng.standard_normal((32, 32, 3, sets.size), dtype=np.float32))
    imdb = {"images": {"data": data, "labels": rng.integers(1, 11, sets.size).astype(np.float32),
                       "set": sets}}
    net = cnnx_net(model)
    schedule = net["meta"]["trainOpts"]
    marks = []
    with tempfile.TemporaryDirectory() as exp_dir:
        start = time.perf_counter()
        _, stats = cnn_train(
            net, imdb, cifar10.get_batch, exp_dir=exp_dir, batch_size=schedule["batchSize"], num_epochs=1,
            learning_rate=schedule["learningRate"], weight_decay=schedule["weightDecay"],
            train=np.flatnonzero(sets == 1), val=np.flatnonzero(sets == 3), progress=False,
            post_epoch_fn=lambda *args: marks.append(time.perf_counter()))
        epoch = marks[0] - start
        plot = _Plot(os.path.join(exp_dir, "net-train.png"))
        full = {phase: stats[phase] * schedule["numEpochs"] for phase in ("train", "val")}
        first = time.perf_counter()
        plot.draw(full)
        second = time.perf_counter()
        plot.draw(full)
        redraw = time.perf_counter() - second
    train, val = stats["train"][0], stats["val"][0]
    epochs = schedule["numEpochs"]
    print(f"CIFAR-10 {model} (examples/cifar10.py --model {model} defaults), {threads} thread(s), "
          f"batch {schedule['batchSize']}")
    print(f"one epoch: {epoch:.1f} s ({train['num'] / train['time']:.0f} img/s training, "
          f"{val['num'] / val['time']:.0f} img/s testing, {epoch - train['time'] - val['time']:.2f} s "
          "for the checkpoint, stats.json and the plot)")
    print(f"{epochs} epochs: {epochs * epoch / 60:.0f} min")
    print(f"redrawing the {epochs}-epoch plot: {redraw:.3f} s = {100 * redraw / epoch:.2f}% of an epoch "
          f"(the first draw, with building the figure and importing matplotlib: {second - first:.3f} s)")


def torch_conv(nn, cin, cout, size, pad, std):
    """A convolution initialised as cnnx.models does: Gaussian filters of that std, zero biases."""
    layer = nn.Conv2d(cin, cout, size, padding=pad)
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


def torch_lenet(torch):
    nn = torch.nn
    conv = functools.partial(torch_conv, nn)
    # ceil_mode=True gives MatConvNet's [0 1 0 1] pooling pad; padding is excluded from averages.
    return nn.Sequential(
        conv(3, 32, 5, 2, 0.01), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
        conv(32, 32, 5, 2, 0.05), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
        conv(32, 64, 5, 2, 0.05), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
        conv(64, 64, 4, 0, 0.05), nn.ReLU(),
        conv(64, 10, 1, 0, 0.05), nn.Flatten(),
    )


def torch_nin(torch):
    nn = torch.nn

    def conv(cin, cout, size, pad=0, scale=1.0):  # He initialisation, as cifar_nin
        return torch_conv(nn, cin, cout, size, pad, scale * np.sqrt(2.0 / (size * size * cin)))

    # MatConvNet's unpadded 3x3 stride-2 pools have floor output sizes (32 -> 15 -> 7): PyTorch's
    # default; dropout scales the kept values by 1 / (1 - rate) in both.
    return nn.Sequential(
        conv(3, 192, 5, 2), nn.ReLU(), conv(192, 160, 1), nn.ReLU(), conv(160, 96, 1), nn.ReLU(),
        nn.MaxPool2d(3, 2), nn.Dropout(0.5),
        conv(96, 192, 5, 2), nn.ReLU(), conv(192, 192, 1), nn.ReLU(), conv(192, 192, 1), nn.ReLU(),
        nn.AvgPool2d(3, 2), nn.Dropout(0.5),
        conv(192, 192, 3, 1), nn.ReLU(), conv(192, 192, 1), nn.ReLU(),
        conv(192, 10, 1, scale=0.1), nn.AvgPool2d(7, 1), nn.Flatten(),
    )


def run_torch(threads, num_batches, model, channels_last):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images, labels = random_batches(num_batches)
    x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))  # N, C, H, W
    y_all = torch.from_numpy(labels.astype(np.int64) - 1)
    net = {"lenet": torch_lenet, "nin": torch_nin}[model](torch)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    opts = MODELS[model]
    filter_rate, bias_rate = (opts["learning_rate"] * m for m in opts["multipliers"])
    groups = []
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    for i, layer in enumerate(convs):
        scale = opts["last_scale"] if i == len(convs) - 1 else 1.0
        groups.append({"params": [layer.weight], "lr": filter_rate * scale})
        groups.append({"params": [layer.bias], "lr": bias_rate * scale})
    optimizer = torch.optim.SGD(groups, lr=opts["learning_rate"], momentum=MOMENTUM,
                                weight_decay=opts["weight_decay"])
    loss_function = torch.nn.CrossEntropyLoss(reduction="sum")

    def epoch():
        start = time.perf_counter()
        for b in range(num_batches):
            x = x_all[b * BATCH:(b + 1) * BATCH].contiguous(memory_format=memory_format)
            y = y_all[b * BATCH:(b + 1) * BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(net(x), y) / BATCH  # cnn_train divides the summed loss's gradient
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    before = reset_peak_rss()
    epoch()  # warm-up, as cnnx's first epoch
    return num_batches * BATCH / epoch(), before


def cnnx_kernels(threads):
    """(the GEMM kernel of lenet conv2's forward plan, {instruction set: FMA ceiling GFLOP/s})."""
    cnnx = import_cnnx()
    from bench_layers import fma_ceilings

    geom = cnnx.conv.validate_conv(np.zeros((16, 16, 32, BATCH), np.float32), np.zeros((5, 5, 32, 32), np.float32),
                                   None, pad=2).geometry
    return cnnx.conv.plan_conv(geom, np.float32).kernel, fma_ceilings(threads)


def worker(args):
    extra = {}
    if args.library in ("cnnx", "cnnx-dagnn"):
        speed, before, extra["outside_conv"], extra["step_flops"] = run_cnnx(
            args.threads, args.batches, args.model, progress=args.ranks > 1, dagnn=args.library != "cnnx")
        extra["kernel"], extra["fma_ceiling"] = cnnx_kernels(args.threads)
    else:
        speed, before = run_torch(args.threads, args.batches, args.model, args.library == "torch-cl")
    after = peak_rss_mb()
    if os.environ.get("PMI_RANK", "0") == "0":  # under mpiexec, rank 0 speaks for all
        print(json.dumps({"speed": speed, "peak_mb": after, "growth_mb": after - before, **extra}))


def mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")  # pip's mpich, next to this Python
    return beside if os.path.exists(beside) else "mpiexec"


def mpi_scaling(model, repeats, batches):
    """1 process x 1 thread, 1 process x 2 threads, 2 MPI ranks x 1 thread: img/s and efficiency."""
    configs = [(1, 1), (1, 2), (2, 1)]  # (ranks, threads per rank)
    results = {config: [] for config in configs}
    bytes_per_step = None
    for r in range(repeats):
        for ranks, threads in (configs if r % 2 == 0 else configs[::-1]):
            run, output = run_config("cnnx", model, threads, batches, ranks)
            results[(ranks, threads)].append(run["speed"])
            found = re.search(r"gathers ([\d,]+) bytes", output)
            bytes_per_step = found.group(1) if found else bytes_per_step
            print(f"  run {r + 1}/{repeats}: {ranks} rank(s) x {threads} thread(s): {run['speed']:8.1f} img/s",
                  file=sys.stderr)
    one = max(results[(1, 1)])
    print(f"{model} training through cnn_train, batch {BATCH}, {batches} timed batches, "
          f"best/median of {repeats} run(s)")
    print(f"{'configuration':26s} {'img/s best':>11s} {'median':>9s} {'efficiency':>11s}")
    for ranks, threads in configs:
        best = max(results[(ranks, threads)])
        name = f"{ranks} process, {threads} thread(s)" if ranks == 1 else f"{ranks} MPI ranks x {threads} thread"
        print(f"{name:26s} {best:11.1f} {statistics.median(results[(ranks, threads)]):9.1f} "
              f"{best / (one * ranks * threads):10.0%}")
    print(f"bytes gathered into each rank per step (2 ranks): {bytes_per_step}")


def run_config(library, model, threads, batches, ranks=1):
    """One worker process (``ranks`` > 1: under mpiexec); returns its figures and its whole output."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CNNX_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    command = [sys.executable, os.path.abspath(__file__), "--worker", library, "--model", model,
               "--threads", str(threads), "--batches", str(batches), "--ranks", str(ranks)]
    if ranks > 1:
        command = [mpiexec(), "-n", str(ranks)] + command
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{library} with {ranks} rank(s) x {threads} thread(s) failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet",
                        help="network: cifar_lenet (default) or cifar_nin (Network in Network)")
    parser.add_argument("--quick", action="store_true", help="fewer batches and one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each configuration")
    parser.add_argument("--batches", type=int, default=None, help="batches per timed epoch")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to compare (default: 1 2)")
    parser.add_argument("--cifar-run", action="store_true",
                        help="time the CIFAR-10 example's default run instead (cnnx only)")
    parser.add_argument("--mpi", action="store_true",
                        help="1 vs 2 MPI ranks of 1 thread against 1 process of 2 threads (cnnx only)")
    parser.add_argument("--dagnn", action="store_true",
                        help="also train the network as a DagNN (cifar_dagnn) through cnn_train")
    parser.add_argument("--worker", choices=["cnnx", "cnnx-dagnn", "torch", "torch-cl"], help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mpi and not args.worker:
        mpi_scaling(args.model, args.repeats or (1 if args.quick else 3), args.batches or (5 if args.quick else 20))
        return
    if args.cifar_run:
        for threads in args.threads:
            cifar_run(args.model, threads)
        return
    if args.worker:
        args.library = args.worker
        args.threads = args.threads[0]
        worker(args)
        return
    repeats = args.repeats or (1 if args.quick else 3)
    batches = args.batches or (5 if args.quick else 20)
    libraries = ["cnnx"] + (["cnnx-dagnn"] if args.dagnn else []) + (["torch", "torch-cl"] if torch_available() else [])
    configs = [(lib, t) for t in args.threads for lib in libraries]
    results = {config: [] for config in configs}
    for r in range(repeats):
        order = configs if r % 2 == 0 else configs[::-1]  # alternate, so drifts hit both sides
        for library, threads in order:
            results[(library, threads)].append(run_config(library, args.model, threads, batches)[0])
            print(f"  run {r + 1}/{repeats}: {library:8s} {threads} thread(s): "
                  f"{results[(library, threads)][-1]['speed']:8.1f} img/s", file=sys.stderr)

    print(f"{args.model} training step, batch {BATCH}, {batches} timed batches, best/median of "
          f"{repeats} run(s)")
    print(f"{'library':10s} {'threads':>7s} {'img/s best':>11s} {'median':>9s} "
          f"{'peak MB':>8s} {'growth MB':>10s} {'cnnx/this':>10s} {'outside conv':>13s}")
    for library, threads in configs:
        runs = results[(library, threads)]
        best = max(run["speed"] for run in runs)
        cnnx_best = max(run["speed"] for run in results[("cnnx", threads)])
        ratio = "" if library == "cnnx" else f"{cnnx_best / best:.2f}"
        outside = ("" if "outside_conv" not in runs[0]
                   else f"{100 * statistics.median(run['outside_conv'] for run in runs):12.1f}%")
        print(f"{library:10s} {threads:7d} {best:11.1f} "
              f"{statistics.median(run['speed'] for run in runs):9.1f} "
              f"{max(run['peak_mb'] for run in runs):8.0f} "
              f"{max(run['growth_mb'] for run in runs):10.0f} {ratio:>10s} {outside}")
    for threads in args.threads:
        run = results[("cnnx", threads)][-1]
        # The ceiling of the instruction set the GEMM kernel ran (CNNX_ISA may force a narrower one).
        isa = (run["kernel"] if run["kernel"] in run["fma_ceiling"]
               else next(isa for isa in ("avx512", "avx2", "generic") if isa in run["fma_ceiling"]))
        ceiling = run["fma_ceiling"][isa]
        best = max(r["speed"] for r in results[("cnnx", threads)])
        conv = best / BATCH * run["step_flops"] / 1e9
        forced = os.environ.get("CNNX_ISA") or "auto"
        print(f"cnnx {threads} thread(s): GEMM kernel {run['kernel']} (CNNX_ISA={forced}); "
              f"FMA ceiling ({isa}) {ceiling:g} GFLOP/s; the best run's convolutions ran at {conv:.0f} GFLOP/s "
              f"({100 * conv / ceiling:.0f}% of it)")
    if not torch_available():
        print("(torch is not installed: no PyTorch comparison)")


if __name__ == "__main__":
    main()
