"""The planned arena of training steps (cnnx._memory.plan_offsets, StepMemory) and cnn_train's use of it."""
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from cnnx import train as train_module
from cnnx._memory import StepMemory, plan_offsets
from cnnx.train import cnn_train

KIB = 1 << 10
# The name of NumPy's memory handler in this context (numpy._core from NumPy 2, numpy.core before).
handler_name = (np._core if hasattr(np, "_core") else np.core).multiarray.get_handler_name


def most_alive(sizes, starts, ends):
    alive = best = 0
    for _, change in sorted([(e, -s) for s, e in zip(sizes, ends) if e >= 0]
                            + [(a, s) for s, a, e in zip(sizes, starts, ends) if e >= 0]):
        alive += change
        best = max(best, alive)
    return best


def check_plan(sizes, starts, ends, offsets, total, align=64):
    for i, (size, start, end, offset) in enumerate(zip(sizes, starts, ends, offsets)):
        if end < 0:
            assert offset == -1
            continue
        assert offset >= 0 and offset % align == 0 and offset + size <= total
        for j in range(i):
            if ends[j] >= 0 and starts[j] < end and start < ends[j]:  # alive together: apart
                assert offset + size <= offsets[j] or offsets[j] + sizes[j] <= offset, (i, j)
    assert total == max((o + s for o, s, e in zip(offsets, sizes, ends) if e >= 0), default=0)


@pytest.mark.parametrize("seed", range(30))
def test_plan_offsets_keeps_blocks_alive_together_apart(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    sizes = [rng.choice([1, 63, 64, 1000, 4096, 1 << 20]) * rng.randint(1, 9) for _ in range(n)]
    starts, ends = [], []
    for _ in range(n):
        start = rng.randint(0, 200)
        starts.append(start)
        ends.append(-1 if rng.random() < 0.1 else start + rng.randint(1, 80))
    offsets, total = plan_offsets(sizes, starts, ends)
    check_plan(sizes, starts, ends, offsets, total)
    assert total >= most_alive(sizes, starts, ends)
    assert plan_offsets(sizes, starts, ends) == (offsets, total)  # the same plan every run


def test_plan_offsets_reaches_the_most_alive_at_once_on_a_training_like_step():
    # A forward pass keeps its activations, the backward pass frees them in reverse with
    # derivatives coming and going: the plan needs no more than what is alive at the peak.
    sizes, starts, ends = [], [], []
    clock = 0
    activations = [75, 62, 37, 16, 16, 8, 4]
    for mb in activations:
        sizes.append(mb << 20)
        starts.append(clock)
        ends.append(None)
        clock += 1
    for k in reversed(range(len(activations))):
        sizes.append(activations[k] << 20)  # the derivative, alive until the layer below is done
        starts.append(clock)
        ends.append(clock + 2)
        ends[k] = clock + 1
        clock += 2
    offsets, total = plan_offsets(sizes, starts, ends)
    check_plan(sizes, starts, ends, offsets, total)
    assert total == most_alive(sizes, starts, ends)


def test_plan_offsets_leaves_unplanned_blocks_out_and_takes_alignment():
    offsets, total = plan_offsets([10, 20, 30], [0, 1, 2], [5, -1, 6], align=256)
    assert offsets == [256, -1, 0] and total == 266  # the largest first
    assert plan_offsets([], [], []) == ([], 0)
    assert plan_offsets([8], [0], [-1]) == ([-1], 0)


def step_arrays(memory, sizes, check_values=True):
    """One step: arrays of ``sizes`` float64 elements, each filled with its own value, then a
    check that none was overwritten while all are alive."""
    memory.start_step()
    arrays = []
    for i, n in enumerate(sizes):
        a = np.empty(n)
        a.fill(i + 1)
        arrays.append(a)
    if check_values:
        for i, a in enumerate(arrays):
            assert np.all(a == i + 1)
    del a
    del arrays
    memory.end_step()


def test_step_memory_serves_repeated_steps_from_its_plan():
    sizes = [40_000, 9_000, 70_000, 40_000, 12_000]  # float64: 320 KB, 72 KB, 560 KB, 320 KB, 96 KB
    with StepMemory(threshold=100 * KIB) as memory:
        assert handler_name() == "cnnx_step_memory"
        for _ in range(5):
            step_arrays(memory, sizes)
        assert memory.arena_size == 8 * (40_000 + 70_000 + 40_000)  # the large ones, alive together
        assert memory.hits == 3 * 3 and memory.misses == 0  # steps 3 to 5, three large arrays each
        assert memory._handler.alive == (0, 0)  # every large block given back as its array went
    assert handler_name() == "default_allocator"


def test_step_memory_keeps_every_array_intact_when_steps_differ():
    # Steps that are not the recorded one (other sizes, extra arrays, arrays kept past their step,
    # allocations between steps) never get a place that an alive array holds.
    rng = random.Random(3)
    kept = []
    with StepMemory(threshold=16 * KIB) as memory:
        for step in range(40):
            memory.start_step()
            alive = []
            for i in range(rng.randint(1, 12)):
                n = rng.choice([2_000, 5_000, 8_000, 30_000]) * rng.randint(1, 3)
                a = np.full(n, float(step * 100 + i))
                alive.append(a)
                if rng.random() < 0.3:
                    alive.pop(rng.randrange(len(alive)))
                if rng.random() < 0.05:
                    kept.append(a)
            for a in alive + kept:
                assert np.all(a == a[0])
            memory.end_step()
            between = np.full(20_000, -1.0)
            for a in kept:
                assert np.all(a == a[0])
            del between
        assert memory.hits > 0 and memory.misses > 0
    for a in kept:  # still intact once the handler is gone
        assert np.all(a == a[0])


def test_step_memory_zeros_and_resizes_arrays_in_the_arena():
    with StepMemory(threshold=16 * KIB) as memory:
        for _ in range(4):
            memory.start_step()
            a = np.full(10_000, 7.0)
            del a
            z = np.zeros(10_000)  # the arena place of the step before: written with 7s
            assert not z.any()
            z[:] = np.arange(10_000)
            z.resize(20_000, refcheck=False)
            assert np.array_equal(z[:10_000], np.arange(10_000)) and not z[10_000:].any()
            z.resize(5_000, refcheck=False)
            assert np.array_equal(z, np.arange(5_000))
            del z
            memory.end_step()
        assert memory.hits > 0


def test_step_memory_zeros_arrays_that_miss_the_plan():
    # Large zeros outside the plan come from malloc, whose blocks hold what was freed there.
    with StepMemory(threshold=16 * KIB) as memory:
        for step in range(6):
            memory.start_step()
            a = np.full(5_000, 1.0)
            if step >= 2:  # not in the recorded step: misses, from malloc
                for _ in range(3):
                    junk = np.full(30_000, 7.0)
                    del junk
                    z = np.zeros(30_000)
                    assert not z.any()
                    del z
            del a
            memory.end_step()
            between = np.zeros(40_000)  # between steps: the arena's free space, or malloc
            assert not between.any()
            between[:] = 5
            del between
        assert memory.misses >= 4 * 6


def test_step_memory_before_the_plan_and_without_steps():
    with StepMemory(threshold=16 * KIB) as memory:
        a = np.arange(50_000.0)  # no step yet: a mapping of its own
        memory.start_step()
        b = a + 1
        memory.end_step()
        assert memory.arena_size == 0  # the first step only warms up
        assert np.array_equal(b, np.arange(1.0, 50_001.0))
    assert np.array_equal(a, np.arange(50_000.0))
    with pytest.raises(ValueError, match="threshold and max_records must be positive"):
        StepMemory(threshold=0)


RSS_CHILD = """
import numpy as np
from cnnx._memory import StepMemory, keep_freed_memory

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def step(plan):
    # a forward pass keeps 20, 16, 12 and 8 MB, a backward pass frees them, each after a
    # derivative of its size: at most 20 + 16 + 12 + 8 + 8 = 64 MB alive at once
    kept = []
    for mb in (20, 16, 12, 8):
        kept.append(np.ones(mb << 17))
    for mb in (8, 12, 16, 20):
        d = np.ones(mb << 17)
        kept.pop()
        del d
    plan.end_step()

keep_freed_memory()
base = rss_mb()
with StepMemory() as plan:
    for _ in range(12):
        plan.start_step()
        step(plan)
    print(peak_mb() - base, plan.arena_size / 2**20, plan.hits, plan.misses)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_step_memory_holds_about_the_most_a_step_holds_at_once():
    out = subprocess.run([sys.executable, "-c", RSS_CHILD], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(train_module.__file__))))
    growth, arena, hits, misses = (float(v) for v in out.stdout.split())
    assert arena <= 64.01 and hits == 10 * 8 and misses == 0, out.stdout
    assert growth < arena + 8, out.stdout  # the arena, and little else


def small_training(**options):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8, 3, 60)).astype(np.float32)
    labels = (rng.integers(0, 3, 60) + 1).astype(np.float32)
    net = {"layers": [
        {"type": "conv", "weights": [0.1 * rng.standard_normal((3, 3, 3, 64)).astype(np.float32),
                                     np.zeros(64, np.float32)], "pad": 1},
        {"type": "relu"},
        {"type": "pool", "pool": 2, "stride": 2},
        {"type": "conv", "weights": [0.1 * rng.standard_normal((4, 4, 64, 3)).astype(np.float32),
                                     np.zeros(3, np.float32)]},
        {"type": "softmaxloss"}]}
    imdb = {"images": {"set": np.ones(60)}}
    return cnn_train(net, imdb, lambda db, b: (np.asfortranarray(x[..., b]), labels[b]), exp_dir=None,
                     batch_size=20, num_epochs=3, learning_rate=0.1, progress=False, val=np.arange(40, 60),
                     train=np.arange(40), **options)


def test_cnn_train_plans_memory_without_changing_a_bit(monkeypatch):
    plans = []

    class Recording(StepMemory):
        def __init__(self):
            super().__init__(threshold=16 * KIB)  # this small net's arrays are large at 16 KiB
            plans.append(self)

    monkeypatch.setattr(train_module, "StepMemory", Recording)
    net, stats = small_training()
    assert len(plans) == 1 and plans[0].hits > 0 and plans[0].arena_size > 0
    assert handler_name() == "default_allocator"
    plain_net, plain_stats = small_training(plan_memory=False)
    assert len(plans) == 1
    for phase in ("train", "val"):
        for epoch, plain in zip(stats[phase], plain_stats[phase], strict=True):
            assert {k: v for k, v in epoch.items() if k != "time"} == {k: v for k, v in plain.items() if k != "time"}
    for layer, plain in zip(net["layers"], plain_net["layers"]):
        for w, v in zip(layer.get("weights", []), plain.get("weights", [])):
            assert np.array_equal(w, v)


def test_cnn_train_restores_numpy_allocator_after_an_error():
    def failing(db, batch):
        raise RuntimeError("get_batch failed")

    net = {"layers": [{"type": "conv", "weights": [np.zeros((1, 1, 2, 2), np.float32), np.zeros(2, np.float32)]},
                      {"type": "softmaxloss"}]}
    with pytest.raises(RuntimeError, match="get_batch failed"):
        cnn_train(net, {"images": {"set": np.ones(4)}}, failing, exp_dir=None, batch_size=2, num_epochs=1,
                  progress=False)
    assert handler_name() == "default_allocator"


def test_cnn_train_plan_memory_must_be_a_truth_value():
    with pytest.raises(TypeError, match="plan_memory"):
        small_training(plan_memory="yes")
