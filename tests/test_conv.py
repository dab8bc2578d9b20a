"""Tests for vl_nnconv against a slow NumPy reference of MatConvNet's definition, PyTorch and
numerical derivatives."""
import os
import re
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest

import cnnx
from cnnx import testing, vl_nnconv
from cnnx.conv import _SKIP_MIN_TAPS, ALGORITHMS, SUPPORTED_KERNELS, ConvPlan, plan_conv, run_conv, validate_conv

# cnnx's own GEMM kernels this CPU runs (the portable one everywhere, AVX2 and AVX-512 where the
# CPU has them): every test that runs every plan runs each of them too.
OWN_KERNELS = [k for k in SUPPORTED_KERNELS if k != "blas"]
OWN_ONLY = ("implicit_gemm", "implicit_columns", "implicit_backward")  # the algorithms that only run on them


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"


def reference_conv(x, f, b, dzdy=None, pad=0, stride=1, dilate=1):
    """MatConvNet's vl_nnconv written out from the definition (float64, loops over u, v, k).

    Forward returns y; backward returns (dx, df, db). f=None is the identity filter bank.
    """
    x = np.asarray(x, np.float64)
    x = x.reshape(x.shape + (1,) * (4 - x.ndim))
    H, W, C, N = x.shape
    f = np.eye(C).reshape(1, 1, C, C) if f is None else np.asarray(f, np.float64)
    f = f.reshape(f.shape + (1,) * (4 - f.ndim))
    FH, FW, FC, K = f.shape
    pt, pb, pl, pr = np.broadcast_to(pad, 4)
    sy, sx = np.broadcast_to(stride, 2)
    dy_, dx_ = np.broadcast_to(dilate, 2)
    xpad = np.zeros((H + pt + pb, W + pl + pr, C, N))
    xpad[pt:pt + H, pl:pl + W] = x
    YH = (H + pt + pb - (FH - 1) * dy_ - 1) // sy + 1
    YW = (W + pl + pr - (FW - 1) * dx_ - 1) // sx + 1
    per_group = K // (C // FC)

    def window(u, v, k):
        g = k // per_group
        return (slice(u * dy_, u * dy_ + (YH - 1) * sy + 1, sy),
                slice(v * dx_, v * dx_ + (YW - 1) * sx + 1, sx),
                slice(g * FC, (g + 1) * FC))

    if dzdy is None:
        y = np.zeros((YH, YW, K, N))
        for k in range(K):
            for u in range(FH):
                for v in range(FW):
                    y[:, :, k, :] += np.einsum("ijcn,c->ijn", xpad[window(u, v, k)], f[u, v, :, k])
        if b is not None:
            y += np.asarray(b, np.float64).reshape(1, 1, K, 1)
        return y
    dzdy = np.asarray(dzdy, np.float64).reshape(YH, YW, K, N)
    dxpad = np.zeros_like(xpad)
    df = np.zeros_like(f)
    for k in range(K):
        for u in range(FH):
            for v in range(FW):
                w = window(u, v, k)
                df[u, v, :, k] = np.einsum("ijcn,ijn->c", xpad[w], dzdy[:, :, k, :])
                dxpad[w] += np.einsum("c,ijn->ijcn", f[u, v, :, k], dzdy[:, :, k, :])
    db = dzdy.sum(axis=(0, 1, 3))
    return dxpad[pt:pt + H, pl:pl + W], df, db


# (x shape, f shape or None, pad, stride, dilate): odd sizes, asymmetric pads, strides, dilations,
# groups, 1x1 filters, 1x1 outputs (fully connected, direct and through im2row), batched GEMMs.
CASES = [
    ((5, 5, 3, 2), (3, 3, 3, 4), 1, 1, 1),
    ((7, 6, 4, 3), (3, 2, 2, 6), [0, 1, 2, 1], [2, 1], 1),
    ((9, 8, 2, 2), (3, 3, 2, 3), [1, 0, 0, 2], 1, [2, 3]),
    ((11, 10, 3, 2), (4, 3, 3, 2), [2, 1, 0, 3], [3, 2], [1, 2]),
    ((1, 1, 5, 4), (1, 1, 5, 3), 0, 1, 1),
    ((4, 4, 3, 5), (4, 4, 3, 2), 0, 1, 1),
    ((4, 4, 3, 5), (4, 4, 3, 2), 0, 3, 1),
    ((4, 4, 4, 3), (3, 3, 2, 4), [0, 1, 0, 1], 3, 1),
    ((5, 5, 2, 3), (3, 3, 2, 2), 0, 1, 2),
    ((2, 2, 2, 3), (3, 3, 2, 2), 1, 1, 1),
    ((6, 5, 3, 2), (1, 1, 3, 4), 0, 1, 1),
    ((6, 5, 3, 2), (1, 1, 3, 4), 0, 2, 1),
    ((6, 5, 4, 2), (1, 1, 2, 4), [1, 0, 0, 1], 1, 1),
    ((8, 8, 6, 2), (2, 2, 1, 6), 0, 2, 1),
    ((3, 3, 2, 70), (2, 2, 2, 3), 0, 1, 1),
    ((9, 9, 2, 9), (3, 3, 1, 4), 1, 1, 1),
    ((6, 7), (3, 3), [1, 2, 0, 1], 1, 1),
    ((6, 7, 2), (2, 3, 2, 3), 0, [1, 2], 1),
    ((5, 4, 3, 2), None, [1, 2, 0, 1], [2, 1], 1),
    ((5, 4, 3), None, 0, 1, 1),
    # stride 1 with K <= C: the flipped-filter backward pass; FH*FC >= 32: the im2col forward
    ((6, 7, 4, 3), (3, 2, 4, 4), [1, 0, 2, 1], 1, [1, 2]),
    ((9, 9, 4, 2), (3, 3, 2, 4), [2, 1, 1, 0], 1, 1),
    ((7, 6, 8, 3), (5, 4, 8, 6), [2, 1, 0, 2], 1, 1),
    ((9, 8, 8, 2), (4, 3, 8, 5), [1, 2, 1, 0], 1, [2, 1]),
    ((6, 6, 16, 2), (3, 3, 8, 4), [0, 2, 1, 1], 1, 1),
    ((8, 7, 16, 2), (4, 3, 8, 6), [1, 2, 2, 0], 1, [1, 2]),
    ((6, 6, 8, 2), (4, 3, 8, 12), 1, 1, 1),
]


def make(case, dtype, seed=0, with_bias=True):
    x_shape, f_shape, pad, stride, dilate = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    f = None if f_shape is None else rng.standard_normal(f_shape).astype(dtype)
    K = x_shape[2] if f_shape is None else (f_shape + (1, 1))[3]
    b = rng.standard_normal((1, K)).astype(dtype) if with_bias else None
    y = reference_conv(x, f, b, pad=pad, stride=stride, dilate=dilate)
    y = y[:, :, :, 0] if len(x_shape) < 4 else y  # results derived from 2-D/3-D x are 3-D
    dzdy = rng.standard_normal(y.shape).astype(dtype)
    return x, f, b, dzdy, dict(pad=pad, stride=stride, dilate=dilate)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_reference(case, dtype, with_bias):
    x, f, b, dzdy, opts = make(case, dtype, with_bias=with_bias)
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    y = vl_nnconv(x, f, b, **opts)
    ref_y = reference_conv(x, f, b, **opts)
    assert y.dtype == dtype and y.flags.f_contiguous
    assert y.shape == dzdy.shape
    scale = np.abs(ref_y).max()
    np.testing.assert_allclose(y.reshape(ref_y.shape), ref_y, rtol=rtol, atol=rtol * scale)

    dx, df, db = vl_nnconv(x, f, b, dzdy, **opts)
    ref_dx, ref_df, ref_db = reference_conv(x, f, b, dzdy, **opts)
    assert dx.shape == x.shape and dx.dtype == dtype and dx.flags.f_contiguous
    np.testing.assert_allclose(dx.reshape(ref_dx.shape), ref_dx, rtol=rtol,
                               atol=rtol * np.abs(ref_dx).max())
    if f is None:
        assert df is None
    else:
        assert df.shape == f.shape and df.dtype == dtype and df.flags.f_contiguous
        np.testing.assert_allclose(df.reshape(ref_df.shape), ref_df, rtol=rtol,
                                   atol=rtol * np.abs(ref_df).max())
    if b is None:
        assert db is None
    else:
        assert db.shape == b.shape and db.dtype == dtype
        np.testing.assert_allclose(db.ravel(), ref_db, rtol=rtol, atol=rtol * np.abs(ref_db).max())


def _assert_matches_reference(x, f, b, dzdy, opts, dtype):
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    got = (vl_nnconv(x, f, b, **opts),) + vl_nnconv(x, f, b, dzdy, **opts)
    want = (reference_conv(x, f, b, **opts),) + reference_conv(x, f, b, dzdy, **opts)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.reshape(g, w.shape), w, rtol=rtol, atol=rtol * np.abs(w).max())


def with_kernels(plan, geom, dtype):
    """``plan`` on BLAS and, in float32 where the algorithm has its own GEMM, on each of cnnx's
    kernels this CPU runs, with the blocks plan_conv gives and with tiny ones (several blocks of
    the inner dimension and of B's columns even on small shapes)."""
    plans = [] if plan.algorithm in OWN_ONLY else [replace(plan, kernel="blas", kc=0, nc=0)]
    if np.dtype(dtype) != np.float32:
        return plans
    for kernel in OWN_KERNELS:
        own = plan_conv(geom, dtype, plan.backward, plan.threads, kernel=kernel)
        if own.kernel == kernel:  # the algorithm has an own GEMM
            plans += [replace(plan, kernel=kernel, kc=own.kc, nc=own.nc), replace(plan, kernel=kernel, kc=3, nc=1)]
    return plans


def every_plan(geom, dtype, backward, threads=None):
    """The plan vl_nnconv chooses and every other algorithm that applies to ``geom``, each with
    several blockings: one image per GEMM and all of them, blocks of one column and of all; each
    with every GEMM kernel (with_kernels)."""
    chosen = plan_conv(geom, dtype, backward, threads)
    threads = chosen.threads
    plans = [chosen]
    for name, (directions, applies) in ALGORITHMS.items():
        if ("backward" if backward else "forward") not in directions or not applies(geom):
            continue
        batches = (1, 2, geom.N) if name in ("im2row_gemm", "im2col_gemm") else (1,)
        for batch in sorted(set(batches)):
            n_batches = -(-geom.N // batch)
            for chunks in sorted({1, min(3, n_batches), n_batches} if backward else {1}):
                if name == "im2col_gemm" and not backward:
                    cols = (geom.YW,) if batch > 1 else sorted({1, geom.YW})
                elif name == "im2col_shifted":
                    cols = sorted({1, geom.YW})
                elif name == "shifted_stride1":
                    cols = sorted({1, max(geom.W, geom.YW)})
                else:
                    cols = (0,)
                for block_cols in cols:
                    for parts in ((1, 1), (3, 2)) if name.startswith("fully_connected") else ((1, 1),):
                        plans += with_kernels(ConvPlan(name, backward, threads, batch=batch, block_cols=block_cols,
                                                       chunks=max(1, chunks), col_parts=parts[0],
                                                       row_parts=parts[1] if backward else 1), geom, dtype)
    return plans


def run_plans(x, f, b, dzdy, opts, threads=None):
    """[(plan, result)] for every plan of the forward and the backward call."""
    forward = validate_conv(x, f, b, **opts)
    backward = validate_conv(x, f, b, dzdy, **opts)
    out = []
    for problem in (forward, backward):
        for plan in every_plan(problem.geometry, problem.dtype, problem.backward, threads):
            result = run_conv(problem, plan)
            out.append((plan, result if problem.backward else (result,)))
    return out


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_plan_matches_reference(case, dtype):
    # Every algorithm that applies to a shape (im2row with one or several images per GEMM, im2col
    # whole or one column of taps at a time, in blocks of one column or all, the stride-1
    # backward pass one column of taps wide, the fully connected GEMMs in one or several parts)
    # against the reference.
    x, f, b, dzdy, opts = make(case, dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    want_y = reference_conv(x, f, b, **opts)
    want_back = reference_conv(x, f, b, dzdy, **opts)
    names = set()
    for plan, got in run_plans(x, f, b, dzdy, opts):
        names.add(plan.algorithm)
        want = want_back if plan.backward else (want_y,)
        for g, w in zip(got, want):
            if f is None and g is None:
                continue
            np.testing.assert_allclose(np.reshape(g, w.shape), w, rtol=rtol, atol=rtol * np.abs(w).max(),
                                       err_msg=str(plan))
    assert names <= set(ALGORITHMS) and ("identity" in names) == (f is None)


def test_every_algorithm_is_run_by_the_cases():
    seen = set()
    for case in CASES:
        x, f, b, dzdy, opts = make(case, np.float32)
        for problem in (validate_conv(x, f, b, **opts), validate_conv(x, f, b, dzdy, **opts)):
            seen |= {p.algorithm for p in every_plan(problem.geometry, problem.dtype, problem.backward)}
    assert seen == set(ALGORITHMS)


# (case, forward algorithm, backward algorithm) that vl_nnconv chooses
CHOICES = [
    (((32, 32, 3, 10), (5, 5, 3, 32), 2, 1, 1), "im2col_shifted", "shifted_stride1"),      # lenet conv1
    (((16, 16, 32, 10), (5, 5, 32, 32), 2, 1, 1), "im2col_shifted", "shifted_stride1"),    # lenet conv2
    (((8, 8, 32, 10), (5, 5, 32, 64), 2, 1, 1), "im2col_shifted", "shifted_stride1"),      # lenet conv3
    (((4, 4, 64, 10), (4, 4, 64, 10), 0, 1, 1), "fully_connected_direct", "fully_connected_direct"),
    (((4, 4, 64, 10), (3, 3, 64, 10), [0, 1, 0, 1], 2, 1), "im2col_gemm", "im2row_gemm"),
    (((3, 3, 64, 10), (2, 2, 64, 10), 0, 2, 1), "fully_connected", "fully_connected"),
    (((6, 6, 3, 1), (3, 3, 3, 2), 0, 1, 1), "im2row_gemm", "im2row_gemm"),                # FH*FC = 9
    (((6, 6, 3, 1), (1, 1, 3, 2), 0, 1, 1), "direct_1x1", "direct_1x1"),
    (((6, 6, 3, 1), None, 1, 2, 1), "identity", "identity"),
    (((56, 56, 16, 2), (3, 3, 16, 16), 1, 2, 1), "im2col_gemm", "im2row_gemm"),
    (((16, 16, 8, 4), (3, 3, 8, 8), 1, 1, 1), "im2col_shifted", "shifted_stride1"),
    (((5, 5, 8, 4), (3, 3, 8, 8), 1, 1, 1), "im2col_gemm", "shifted_stride1"),            # P < 64
]


@pytest.mark.parametrize("case, forward, backward", CHOICES)
def test_plan_conv_chooses(case, forward, backward):
    # (The choices on BLAS; cnnx's kernels run the implicit GEMMs instead of im2col and shifted_stride1.)
    x, f, b, dzdy, opts = make(case, np.float32)
    geom = validate_conv(x, f, b, **opts).geometry
    assert plan_conv(geom, np.float32, kernel="blas").algorithm == forward
    chosen = plan_conv(geom, np.float32)
    own = forward in ("im2col_shifted", "im2col_gemm") and chosen.kernel != "blas"
    # On cnnx's kernels, output columns of whole tiles of rows run implicit_columns.
    whole_tiles = own and geom.sy == 1 and geom.YH % cnnx._ext.conv.gemm_tile(chosen.kernel)[0] == 0
    assert chosen.algorithm == ("implicit_columns" if whole_tiles else "implicit_gemm" if own else forward)
    assert plan_conv(geom, np.float64).algorithm == forward
    back = validate_conv(x, f, b, dzdy, **opts).geometry
    assert plan_conv(back, np.float32, True, kernel="blas").algorithm == backward
    own = backward == "shifted_stride1" and plan_conv(back, np.float32, True).kernel != "blas"
    assert plan_conv(back, np.float32, True).algorithm == ("implicit_backward" if own else backward)


def test_plan_blocking():
    geom = validate_conv(np.zeros((3, 3, 2, 70)), np.zeros((2, 2, 2, 3)), None).geometry  # 2x2 outputs
    assert plan_conv(geom, np.float64) == ConvPlan("im2row_gemm", False, plan_conv(geom, np.float64).threads,
                                                   batch=64)
    back = plan_conv(geom, np.float64, True)
    assert (back.batch, back.chunks) == (64, 2)
    geom = validate_conv(np.zeros((224, 224, 64, 1)), np.zeros((3, 3, 64, 64)), None, pad=1, stride=2).geometry
    plan = plan_conv(geom, np.float32, kernel="blas")
    assert (plan.algorithm, plan.batch) == ("im2col_gemm", 1)
    assert plan.block_cols == (1 << 20) // (112 * 3 * 3 * 64 * 4)  # a block's matrix within 1 MB


def test_plans_that_do_not_fit_are_errors():
    x, f, b, dzdy, opts = make(CASES[1], np.float32)  # stride [2, 1]
    problem = validate_conv(x, f, b, dzdy, **opts)
    geom = problem.geometry
    for plan, message in [
        (ConvPlan("shifted_stride1", True, 1, block_cols=1),
         f"vl_nnconv: algorithm 'shifted_stride1' (backward) does not apply to {geom}"),
        (ConvPlan("im2col_gemm", True), f"vl_nnconv: algorithm 'im2col_gemm' (backward) does not apply to {geom}"),
        (ConvPlan("identity", True), f"vl_nnconv: algorithm 'identity' (backward) does not apply to {geom}"),
        (ConvPlan("im2row_gemm", True, 1, chunks=99),
         f"vl_nnconv: plan {ConvPlan('im2row_gemm', True, 1, chunks=99)} does not fit {geom}"),
        (ConvPlan("gemm_avx512", True), f"vl_nnconv: unknown algorithm 'gemm_avx512'; one of {sorted(ALGORITHMS)}"),
        (ConvPlan("im2row_gemm", False), "vl_nnconv: a forward plan for a backward call"),
    ]:
        with pytest.raises(ValueError, match=exact(message)):
            run_conv(problem, plan)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[9], CASES[18], CASES[-3]])
def test_inputs_are_not_modified(case):
    # The kernels reuse scratch buffers in place; the caller's arrays must never be among them.
    x, f, b, dzdy, opts = make(case, np.float32)
    x = np.asfortranarray(x)
    dzdy = np.asfortranarray(dzdy)
    saved = [None if a is None else a.copy() for a in (x, f, b, dzdy)]
    vl_nnconv(x, f, b, **opts)
    vl_nnconv(x, f, b, dzdy, **opts)
    for a, before in zip((x, f, b, dzdy), saved):
        if a is not None:
            np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemms_cut_for_small_matrix_kernels(dtype):
    # lenet conv2's shape: forward, filter and data GEMMs all exceed OpenBLAS's small-matrix size
    # and are cut into blocks of columns (gemm_nn).
    x, f, b, dzdy, opts = make(((16, 16, 32, 2), (5, 5, 32, 32), 2, 1, 1), dtype)
    _assert_matches_reference(x, f, b, dzdy, opts, dtype)


# Shapes whose GEMMs span several micro-kernel tiles with partial ones at the edges: K, FC and
# pixel counts above and between the tiles' 8/16/32 rows, inner dimensions above the blocks.
KERNEL_CASES = [
    ((10, 9, 20, 3), (3, 3, 20, 37), 1, 1, 1),       # im2col_shifted / shifted_stride1, K = 37
    ((7, 7, 13, 2), (5, 5, 13, 70), 2, 1, [1, 2]),   # FH*FC = 65, dilated across
    ((9, 11, 6, 3), (3, 3, 6, 33), [1, 0, 2, 1], 2, 1),  # stride 2: im2col_gemm / im2row_gemm
    ((12, 10, 40, 2), (1, 1, 40, 17), 0, 1, 1),      # direct_1x1, 120 pixels
    ((8, 8, 48, 2), (3, 3, 24, 40), 1, 1, 1),        # two groups
]


@pytest.mark.parametrize("case", KERNEL_CASES)
@pytest.mark.parametrize("kernel", OWN_KERNELS)
def test_own_kernels_match_reference_and_blas(case, kernel):
    # Each of cnnx's GEMM kernels this CPU runs, with plan_conv's blocks and with tiny ones, on
    # every algorithm that has an own GEMM: against the reference and, within rounding, BLAS.
    x, f, b, dzdy, opts = make(case, np.float32)
    want = {False: (reference_conv(x, f, b, **opts),), True: reference_conv(x, f, b, dzdy, **opts)}
    ran = set()
    for plan, got in run_plans(x, f, b, dzdy, opts):
        if plan.kernel != kernel:
            continue
        ran.add(plan.algorithm)
        problem = validate_conv(x, f, b, *(() if not plan.backward else (dzdy,)), **opts)
        on_blas = (plan_conv(problem.geometry, np.float32, plan.backward, kernel="blas") if plan.algorithm in OWN_ONLY
                   else replace(plan, kernel="blas", kc=0, nc=0))
        blas = run_conv(problem, on_blas)
        for g, w, bl in zip(got, want[plan.backward], blas if plan.backward else (blas,)):
            scale = np.abs(w).max()
            np.testing.assert_allclose(np.reshape(g, w.shape), w, rtol=1e-4, atol=1e-4 * scale, err_msg=str(plan))
            np.testing.assert_allclose(g, bl, rtol=1e-5, atol=1e-5 * scale, err_msg=str(plan))
    assert ran


def check_own_kernels_against_reference(case, seed):
    """Run ``case`` in float32 forward and backward with the plan vl_nnconv would choose on every
    own kernel, and forward on implicit_columns too where it applies; compare with the reference;
    return the algorithms that ran."""
    x, f, b, dzdy, opts = make(case, np.float32, seed=seed)
    want = {False: (reference_conv(x, f, b, **opts),), True: reference_conv(x, f, b, dzdy, **opts)}
    ran = set()
    for problem in (validate_conv(x, f, b, **opts), validate_conv(x, f, b, dzdy, **opts)):
        for kernel in OWN_KERNELS:
            plan = plan_conv(problem.geometry, np.float32, problem.backward, kernel=kernel)
            plans = [plan]
            if not problem.backward and ALGORITHMS["implicit_columns"][1](problem.geometry):
                plans.append(replace(plan, algorithm="implicit_columns", batch=1, block_cols=0))
            for plan in plans:
                ran.add(plan.algorithm)
                got = run_conv(problem, plan)
                for g, wv in zip(got if problem.backward else (got,), want[problem.backward]):
                    np.testing.assert_allclose(np.reshape(g, wv.shape), wv, rtol=1e-4,
                                               atol=1e-4 * np.abs(wv).max() + 1e-6, err_msg=f"{case} {plan}")
    return ran


def test_own_kernels_on_random_shapes():
    # Random geometries (sizes, pads, strides, dilations, groups, N = 1) on every own kernel, with
    # the plan vl_nnconv would choose for it, against the reference.
    rng = np.random.default_rng(7)
    for _ in range(24):
        groups = int(rng.integers(1, 3))
        fc, kg = int(rng.integers(1, 24)), int(rng.integers(1, 40))
        fh, fw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        dil = [int(d) for d in rng.integers(1, 3, 2)]
        pad = [int(p) for p in rng.integers(0, 3, 4)]
        stride = [int(t) for t in rng.integers(1, 3, 2)]
        h = int(rng.integers((fh - 1) * dil[0] + 1, 14))
        w = int(rng.integers((fw - 1) * dil[1] + 1, 14))
        case = ((h, w, fc * groups, int(rng.integers(1, 4))), (fh, fw, fc, kg * groups), pad, stride, dil)
        check_own_kernels_against_reference(case, int(rng.integers(1 << 30)))


def test_implicit_gemms_on_wide_padding_and_dilation():
    # The implicit GEMMs cut the output into rectangles by the filter rows and columns they reach:
    # pads as wide and as high as the filter (rows and columns that reach only padding), dilations,
    # strides, groups and 1-pixel-wide images, forward and backward, on every own kernel, against
    # the reference.
    rng = np.random.default_rng(23)
    ran = set()
    for _ in range(30):
        groups = int(rng.integers(1, 3))
        fc, kg = int(rng.integers(1, 12)), int(rng.integers(1, 20))
        fh, fw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        dil = [1, int(rng.integers(1, 4))]
        pad = [int(rng.integers(0, fh + 2)), int(rng.integers(0, fh + 2)), int(rng.integers(0, fw + 2)),
               int(rng.integers(0, fw + 2))]
        stride = [1, 1] if rng.random() < 0.6 else [int(t) for t in rng.integers(1, 3, 2)]
        h = int(rng.integers(fh, 10))
        w = int(rng.integers(max(1, (fw - 1) * dil[1] + 1 - pad[2] - pad[3]), 10))
        case = ((h, w, fc * groups, int(rng.integers(1, 3))), (fh, fw, fc, kg * groups), pad, stride, dil)
        ran |= check_own_kernels_against_reference(case, int(rng.integers(1 << 30)))
    if OWN_KERNELS:
        assert {"implicit_gemm", "implicit_columns", "implicit_backward"} <= ran


@pytest.mark.skipif(not OWN_KERNELS, reason="no own kernel on this CPU")
@pytest.mark.parametrize("case", [
    ((8, 8, 32, 2), (5, 5, 32, 64), [2, 2, 2, 2], [1, 1], [1, 1]),   # lenet conv3
    ((6, 7, 16, 2), (4, 3, 16, 13), [3, 1, 0, 2], [1, 1], [1, 2]),   # uneven pads, 13 filters
    ((5, 4, 48, 1), (3, 3, 24, 10), [4, 4, 1, 3], [1, 1], [1, 1]),   # rows that reach only padding, groups
    ((9, 3, 20, 3), (5, 2, 20, 40), [0, 4, 1, 0], [1, 1], [1, 1]),   # bottom padding only
])
def test_implicit_filter_gradient_skips_padding_rows(case):
    # With FH*FC >= _SKIP_MIN_TAPS taps per filter column the filter gradient runs one GEMM per
    # filter column and run of filter rows, over the output rows and columns they reach (A is the
    # packed dY^T read in runs, cnnx_bview.askip): against the reference on every own kernel.
    fh, _, fc, _ = case[1]
    assert fh * fc >= _SKIP_MIN_TAPS
    assert "implicit_backward" in check_own_kernels_against_reference(case, 5)


@pytest.mark.skipif(not OWN_KERNELS, reason="no own kernel on this CPU")
@pytest.mark.parametrize("tiles, extra_rows, wcn, filters, pad, stride, dilate", [
    (2, 0, (9, 3, 3), (5, 5, 3, 13), [2, 2, 2, 2], [1, 1], [1, 1]),   # whole tiles, 2 filter panels
    (0, 7, (6, 4, 2), (3, 3, 2, 14), [1, 2, 0, 3], [1, 2], [2, 1]),   # a short tile, groups, strides
    (1, 5, (5, 2, 2), (4, 2, 2, 5), [0, 1, 2, 2], [1, 1], [1, 3]),    # a whole tile and a short one
])
def test_implicit_columns_on_whole_and_short_tiles(tiles, extra_rows, wcn, filters, pad, stride, dilate):
    # implicit_columns stores whole tiles of MR output rows straight into Y and runs the last rows
    # of a column on a scratch tile: both against the reference on every own kernel, with biases,
    # uneven padding, groups, horizontal strides and dilations.
    for kernel in OWN_KERNELS:
        out_rows = tiles * cnnx._ext.conv.gemm_tile(kernel)[0] + extra_rows
        height = out_rows + (filters[0] - 1) * dilate[0] - pad[0] - pad[1]
        x, f, b, _, opts = make(((height,) + wcn, filters, pad, stride, dilate), np.float32, seed=out_rows)
        problem = validate_conv(x, f, b, **opts)
        assert problem.geometry.YH == out_rows
        plan = replace(plan_conv(problem.geometry, np.float32, kernel=kernel), algorithm="implicit_columns",
                       batch=1, block_cols=0)
        want = reference_conv(x, f, b, **opts)
        np.testing.assert_allclose(np.reshape(run_conv(problem, plan), want.shape), want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max(), err_msg=f"{kernel} {plan}")


def test_kernel_choice():
    # float32 runs the widest own kernel where it beats BLAS (AVX-512 everywhere, AVX2 on the
    # one-column-of-taps algorithms), float64 and the fully connected algorithms run BLAS.
    lenet2 = validate_conv(np.zeros((16, 16, 32, 4), np.float32), np.zeros((5, 5, 32, 32), np.float32), None,
                           pad=2).geometry
    strided = validate_conv(np.zeros((9, 9, 8, 2), np.float32), np.zeros((3, 3, 8, 8), np.float32), None,
                            stride=2).geometry
    fc = validate_conv(np.zeros((4, 4, 8, 2), np.float32), np.zeros((4, 4, 8, 3), np.float32), None).geometry
    widest = next((k for k in ("avx512", "avx2") if k in SUPPORTED_KERNELS), "blas")
    forced = cnnx.conv.FORCED_KERNEL
    for backward in (False, True):
        assert plan_conv(lenet2, np.float32, backward).kernel == (forced or widest)
        assert plan_conv(strided, np.float32, backward).kernel == (
            forced or ("avx512" if widest == "avx512" else "blas"))
        assert plan_conv(lenet2, np.float64, backward).kernel == "blas"
        assert plan_conv(fc, np.float32, backward).kernel == "blas"
        assert plan_conv(fc, np.float32, backward, kernel="generic").kernel == "blas"
    lenet1 = validate_conv(np.zeros((32, 32, 3, 4), np.float32), np.zeros((5, 5, 3, 32), np.float32), None,
                           pad=2).geometry  # 3 channels: the data derivative alone runs on BLAS
    assert plan_conv(lenet1, np.float32, True, data_only=True).kernel == (forced or "blas")
    assert plan_conv(lenet1, np.float32, True).kernel == (forced or widest)
    assert plan_conv(lenet2, np.float32, True, data_only=True).kernel == (forced or widest)
    plan = plan_conv(lenet2, np.float32, kernel="generic")
    assert (plan.kernel, plan.kc, plan.nc) == ("generic", *cnnx.conv._gemm_blocks("generic"))
    assert 16 <= plan.kc <= cnnx._ext.conv.KC_MAX and plan.nc % cnnx._ext.conv.gemm_tile("generic")[1] == 0


def _isa_run(value, code):
    """Run ``code`` in a fresh interpreter with CNNX_ISA=value; its (return code, stdout, stderr).

    The child runs in the folder holding the cnnx this process imported (installed or built in
    place), so that a checkout's unbuilt source tree in the working directory cannot shadow it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnx.__file__)))
    env = dict(os.environ, CNNX_ISA=value, PYTHONPATH=root)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=root)
    return run.returncode, run.stdout.strip(), run.stderr.strip()


@pytest.mark.parametrize("value", ["generic", "BLAS", " auto ", ""] + OWN_KERNELS[1:])
def test_cnnx_isa_forces_a_kernel(value):
    code = ("import numpy as np, cnnx.conv as c; g = c.validate_conv(np.zeros((16, 16, 32, 2), np.float32), "
            "np.zeros((5, 5, 32, 32), np.float32), None, pad=2).geometry; "
            "print(c.FORCED_KERNEL, c.plan_conv(g, np.float32).kernel, c.plan_conv(g, np.float64, True).kernel)")
    rc, out, err = _isa_run(value, code)
    assert rc == 0, err
    name = value.strip().lower()
    if name in ("", "auto"):
        widest = next((k for k in ("avx512", "avx2") if k in SUPPORTED_KERNELS), "blas")
        assert out == f"None {widest} blas"
    else:
        assert out == f"{name} {name} blas"


def test_cnnx_isa_errors():
    rc, _, err = _isa_run("sse9", "import cnnx")
    assert rc != 0
    assert err.splitlines()[-1] == ("ValueError: CNNX_ISA must be one of auto, blas, generic, avx2, avx512; "
                                    "got 'sse9'")
    missing = [k for k in ("avx2", "avx512") if k not in SUPPORTED_KERNELS]
    for name in missing:
        rc, _, err = _isa_run(name, "import cnnx")
        assert err.splitlines()[-1] == (f"ValueError: CNNX_ISA={name}: this CPU cannot run it "
                                        f"(it runs {', '.join(SUPPORTED_KERNELS)})")


def test_own_kernel_plans_that_do_not_fit_are_errors():
    x, f, b, dzdy, opts = make(KERNEL_CASES[0], np.float32)
    problem = validate_conv(x, f, b, **opts)
    geom = problem.geometry
    for plan, message in [
        (ConvPlan("im2col_shifted", False, 1, block_cols=1, kernel="generic", kc=0, nc=4),
         f"vl_nnconv: plan {ConvPlan('im2col_shifted', False, 1, block_cols=1, kernel='generic', kc=0, nc=4)} "
         f"does not fit {geom}"),
        (ConvPlan("im2col_shifted", False, 1, block_cols=1, kernel="sse9", kc=8, nc=4),
         f"vl_nnconv: kernel 'sse9' is not one of this CPU's {', '.join(SUPPORTED_KERNELS)}"),
    ]:
        with pytest.raises(ValueError, match=exact(message)):
            run_conv(problem, plan)
    x64, f64, b64, _, _ = make(KERNEL_CASES[0], np.float64)
    with pytest.raises(ValueError, match=exact("vl_nnconv: kernel 'generic' runs float32 only, not float64")):
        run_conv(validate_conv(x64, f64, b64, **opts),
                 ConvPlan("im2col_shifted", False, 1, block_cols=1, kernel="generic", kc=8, nc=4))
    fc = validate_conv(np.zeros((4, 4, 8, 2), np.float32), np.zeros((4, 4, 8, 3), np.float32), None)
    bad = ConvPlan("fully_connected_direct", False, 1, kernel="generic", kc=8, nc=4)
    with pytest.raises(ValueError, match=exact(f"vl_nnconv: plan {bad} does not fit {fc.geometry}")):
        run_conv(fc, bad)
    on_blas = ConvPlan("implicit_gemm", False, 1)  # the implicit GEMM has no BLAS form
    with pytest.raises(ValueError, match=exact(f"vl_nnconv: plan {on_blas} does not fit {geom}")):
        run_conv(problem, on_blas)
    dilated = validate_conv(x, f[:2], b, dilate=[2, 1]).geometry
    with pytest.raises(ValueError, match=exact(
            f"vl_nnconv: algorithm 'implicit_gemm' (forward) does not apply to {dilated}")):
        run_conv(validate_conv(x, f[:2], b, dilate=[2, 1]), ConvPlan("implicit_gemm", False, 1, kernel="generic",
                                                                     kc=8, nc=4))


@pytest.mark.parametrize("kernel", OWN_KERNELS)
def test_fma_loop_counts_its_operations(kernel):
    lanes = {"generic": 4, "avx2": 8, "avx512": 16}[kernel]
    assert cnnx._ext.conv.fma_loop(kernel, 10, 2) == 2 * 2 * lanes * 12 * 10


@pytest.mark.parametrize("vector", [True, False])
@pytest.mark.parametrize("rows", [1, 7, 8, 9, 16, 33])
@pytest.mark.parametrize("cols", [1, 5, 8, 12, 17])
def test_transpose_kernel(vector, rows, cols):
    # The implicit GEMMs' layout changes: 8 x 8 register blocks (AVX2) with scalar edges, or the
    # scalar loop; both must be exact copies (plus one rounded addition of the row's value).
    rng = np.random.default_rng(rows * 100 + cols)
    a = rng.standard_normal(rows * cols, dtype=np.float32)
    add = rng.standard_normal(rows, dtype=np.float32)
    matrix = a.reshape(cols, rows).T  # column-major rows x cols
    out = cnnx._ext.conv.transpose(a, rows, cols, vector=vector)
    np.testing.assert_array_equal(out.reshape(rows, cols).T, matrix.T)
    out = cnnx._ext.conv.transpose(a, rows, cols, add, vector=vector)
    np.testing.assert_array_equal(out.reshape(rows, cols).T, (matrix + add[:, None]).T)


def test_transpose_kernel_checks_its_sizes():
    with pytest.raises(ValueError, match="transpose: a must hold rows[*]cols values"):
        cnnx._ext.conv.transpose(np.zeros(5, np.float32), 2, 3)


def test_matconvnet_call_forms():
    x, f, b, dzdy, _ = make(CASES[1], np.float32)
    y = vl_nnconv(x, f, b, pad=[0, 1, 2, 1], stride=[2, 1])
    np.testing.assert_array_equal(vl_nnconv(x, f, b, "Pad", [0, 1, 2, 1], "STRIDE", [2, 1]), y)
    backward = vl_nnconv(x, f, b, dzdy, "pad", [0, 1, 2, 1], "stride", [2, 1])
    for got, want in zip(vl_nnconv(x, f, b, dzdy=dzdy, pad=[0, 1, 2, 1], stride=[2, 1]), backward):
        np.testing.assert_array_equal(got, want)
    # [] is MATLAB's "none" for the filters, the biases and the derivative
    np.testing.assert_array_equal(vl_nnconv(x, f, [], [], "Pad", [0, 1, 2, 1], "Stride", [2, 1]),
                                  vl_nnconv(x, f, None, pad=[0, 1, 2, 1], stride=[2, 1]))


def test_input_memory_order_does_not_matter():
    x, f, b, dzdy, opts = make(CASES[3], np.float64)
    y = vl_nnconv(x, f, b, **opts)
    yc = vl_nnconv(np.ascontiguousarray(x), np.ascontiguousarray(f), b.T, **opts)
    np.testing.assert_array_equal(y, yc)
    strided = np.asfortranarray(np.repeat(x, 2, axis=3))[:, :, :, ::2]
    np.testing.assert_array_equal(vl_nnconv(strided, f, b, **opts), y)
    for got, want in zip(vl_nnconv(x, f, b, np.ascontiguousarray(dzdy), **opts),
                         vl_nnconv(x, f, b, dzdy, **opts)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("flag", ["NoDerData", "NoDerFilters", "NoDerBiases"])
def test_no_derivative_flags(flag):
    x, f, b, dzdy, opts = make(CASES[1], np.float32)
    full = vl_nnconv(x, f, b, dzdy, **opts)
    skipped = {"NoDerData": 0, "NoDerFilters": 1, "NoDerBiases": 2}[flag]
    for result in (vl_nnconv(x, f, b, dzdy, flag, "Pad", opts["pad"], "Stride", opts["stride"]),
                   vl_nnconv(x, f, b, dzdy, **{flag: True}, **opts)):
        for i in range(3):
            if i == skipped:
                assert result[i] is None
            else:
                np.testing.assert_array_equal(result[i], full[i])
    pythonic = {"NoDerData": "no_der_data", "NoDerFilters": "no_der_filters",
                "NoDerBiases": "no_der_biases"}[flag]
    assert vl_nnconv(x, f, b, dzdy, **{pythonic: True}, **opts)[skipped] is None


@pytest.mark.skipif(not OWN_KERNELS or cnnx.conv.FORCED_KERNEL is not None, reason="needs the own kernels' choice")
def test_few_channel_data_derivative_runs_apart():
    # lenet conv1's shape (3 channels): both derivatives in one call run as two plans, the data
    # derivative on its own (BLAS) plan and the filter and bias derivatives on the own kernels, and
    # give exactly what the calls for each derivative alone give.
    rng = np.random.default_rng(5)
    x = np.asfortranarray(rng.standard_normal((12, 12, 3, 2), dtype=np.float32))
    f = np.asfortranarray(rng.standard_normal((5, 5, 3, 8), dtype=np.float32))
    b = rng.standard_normal(8, dtype=np.float32)
    dzdy = np.asfortranarray(rng.standard_normal((12, 12, 8, 2), dtype=np.float32))
    problem = validate_conv(x, f, b, dzdy, pad=2)
    assert cnnx.conv._data_derivative_plan(problem) == plan_conv(problem.geometry, np.float32, True, data_only=True)
    assert plan_conv(problem.geometry, np.float32, True, data_only=True).kernel == "blas"
    assert plan_conv(problem.geometry, np.float32, True).kernel != "blas"
    dzdx, dzdf, dzdb = vl_nnconv(x, f, b, dzdy, pad=2)
    np.testing.assert_array_equal(dzdx, vl_nnconv(x, f, b, dzdy, pad=2, NoDerFilters=True, NoDerBiases=True)[0])
    _, alone_f, alone_b = vl_nnconv(x, f, b, dzdy, pad=2, NoDerData=True)
    np.testing.assert_array_equal(dzdf, alone_f)
    np.testing.assert_array_equal(dzdb, alone_b)
    assert cnnx.conv._data_derivative_plan(validate_conv(x, f, b, dzdy, "NoDerFilters", "NoDerBiases", pad=2)) is None
    assert cnnx.conv._data_derivative_plan(validate_conv(x.astype(np.float64), f.astype(np.float64),
                                                         b.astype(np.float64), dzdy.astype(np.float64), pad=2)) is None


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[7], CASES[13], CASES[18]])
def test_numerical_derivatives_float64(case):
    x, f, b, dzdy, opts = make(case, np.float64)
    dx, df, db = vl_nnconv(x, f, b, dzdy, **opts)
    testing.check_derivative(lambda t: vl_nnconv(t, f, b, **opts), x, dzdy, dx,
                             method="central", rtol=1e-7, atol=1e-9)
    if f is not None:
        testing.check_derivative(lambda t: vl_nnconv(x, t, b, **opts), f, dzdy, df,
                                 method="central", rtol=1e-7, atol=1e-9)
    testing.check_derivative(lambda t: vl_nnconv(x, f, t, **opts), b, dzdy, db,
                             method="central", rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[11]])
def test_numerical_derivatives_float32_matconvnet_style(case):
    x, f, b, dzdy, opts = make(case, np.float32)
    dx, df, db = vl_nnconv(x, f, b, dzdy, **opts)
    testing.check_derivative(lambda t: vl_nnconv(t, f, b, **opts), x, dzdy, dx)
    testing.check_derivative(lambda t: vl_nnconv(x, t, b, **opts), f, dzdy, df)
    testing.check_derivative(lambda t: vl_nnconv(x, f, t, **opts), b, dzdy, db)


def test_derivative_check_catches_a_wrong_gradient():
    x, f, b, dzdy, opts = make(CASES[0], np.float64)
    dx = vl_nnconv(x, f, b, dzdy, **opts)[0]
    dx[1, 2, 0, 1] += 1e-3
    with pytest.raises(AssertionError):
        testing.check_derivative(lambda t: vl_nnconv(t, f, b, **opts), x, dzdy, dx,
                                 method="central", rtol=1e-7, atol=1e-9)


def _torch_conv(torch, x, f, b, pad, stride, dilate, groups):
    """PyTorch's conv2d on MatConvNet arrays: (H,W,C,N) <-> NCHW, asymmetric pads via F.pad."""
    F = torch.nn.functional
    xt = torch.tensor(np.transpose(x, (3, 2, 0, 1)), requires_grad=True)
    ft = torch.tensor(np.transpose(f, (3, 2, 0, 1)), requires_grad=True)
    bt = torch.tensor(b.ravel(), requires_grad=True)
    pt, pb, pl, pr = pad
    yt = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), ft, bt, stride=stride, dilation=dilate, groups=groups)
    return xt, ft, bt, yt


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[7], CASES[13], CASES[14], CASES[15]])
def test_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    x, f, b, dzdy, opts = make(case, np.float64)
    pad = tuple(np.broadcast_to(opts["pad"], 4))
    groups = x.shape[2] // f.shape[2]
    xt, ft, bt, yt = _torch_conv(torch, x, f, b, pad, tuple(np.broadcast_to(opts["stride"], 2)),
                                 tuple(np.broadcast_to(opts["dilate"], 2)), groups)
    y = vl_nnconv(x, f, b, **opts)
    np.testing.assert_allclose(np.transpose(y, (3, 2, 0, 1)), yt.detach().numpy(), rtol=1e-12,
                               atol=1e-12)
    yt.backward(torch.tensor(np.transpose(dzdy, (3, 2, 0, 1))))
    dx, df, db = vl_nnconv(x, f, b, dzdy, **opts)
    np.testing.assert_allclose(dx, np.transpose(xt.grad.numpy(), (2, 3, 1, 0)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(df, np.transpose(ft.grad.numpy(), (2, 3, 1, 0)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db.ravel(), bt.grad.numpy(), rtol=1e-12, atol=1e-12)


# Shapes with several chunks of images: per-image GEMMs, stacked GEMMs, and a 1x1 output.
DETERMINISM_CASES = [
    ((12, 12, 4, 37), (3, 3, 4, 8), 1, 1, 1),
    ((8, 8, 8, 37), (5, 5, 8, 8), 2, 1, 1),
    ((4, 4, 8, 37), (4, 4, 8, 8), 0, 1, 1),
    ((5, 5, 4, 37), (3, 3, 2, 4), [0, 1, 0, 1], 3, 1),
    ((10, 9, 16, 37), (4, 3, 8, 6), [1, 0, 2, 1], 1, [1, 2]),
]


@pytest.mark.parametrize("case", DETERMINISM_CASES)
def test_bitwise_identical_at_any_thread_count(case):
    # Every plan (the chosen one and every other algorithm and blocking) run at 1, 2 and 3
    # threads, whatever the thread policy would choose for these sizes.
    x, f, b, dzdy, opts = make(case, np.float32)
    runs = [run_plans(x, f, b, dzdy, opts, threads=n) for n in (1, 2, 3)]
    for other in runs[1:]:
        for (plan, got), (plan1, want) in zip(other, runs[0]):
            assert plan.threads != plan1.threads and plan.algorithm == plan1.algorithm
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w, err_msg=str(plan))


@pytest.mark.parametrize("case", DETERMINISM_CASES)
def test_bitwise_identical_through_set_num_threads(case, restore_threads):
    x, f, b, dzdy, opts = make(case, np.float32)
    results = []
    for n in (1, 2, 3):
        cnnx.set_num_threads(n)
        results.append((vl_nnconv(x, f, b, **opts),) + vl_nnconv(x, f, b, dzdy, **opts))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


def test_thread_policy_runs_small_convolutions_on_one_thread(restore_threads):
    cnnx.set_num_threads(2)
    small = validate_conv(np.zeros((6, 6, 3, 1), np.float32), np.zeros((3, 3, 3, 2), np.float32), None)
    assert plan_conv(small.geometry, np.float32).threads == 1  # 2 kFLOP, the README's check_derivative
    assert plan_conv(small.geometry, np.float32, True).threads == 1
    lenet2 = validate_conv(np.zeros((16, 16, 32, 100), np.float32), np.zeros((5, 5, 32, 32), np.float32), None,
                           pad=2)
    assert plan_conv(lenet2.geometry, np.float32).threads == 2
    assert plan_conv(lenet2.geometry, np.float32, threads=3).threads == 3
    cnnx.set_num_threads(1)
    assert plan_conv(lenet2.geometry, np.float32).threads == 1


@pytest.mark.parametrize("case", DETERMINISM_CASES)
def test_repeated_calls_are_identical(case):
    # Catches races between the OpenMP threads of one call, which show up only now and then.
    x, f, b, dzdy, opts = make(case, np.float32)
    first = (vl_nnconv(x, f, b, **opts),) + vl_nnconv(x, f, b, dzdy, **opts)
    for _ in range(40):
        again = (vl_nnconv(x, f, b, **opts),) + vl_nnconv(x, f, b, dzdy, **opts)
        for got, want in zip(again, first):
            np.testing.assert_array_equal(got, want)


def test_concurrent_calls_from_python_threads():
    cases = [make(c, np.float32, seed=i) for i, c in enumerate(DETERMINISM_CASES)]
    expected = [(vl_nnconv(x, f, b, **o), vl_nnconv(x, f, b, d, **o)) for x, f, b, d, o in cases]
    failures = []

    def work(i):
        x, f, b, d, o = cases[i % len(cases)]
        for _ in range(5):
            y = vl_nnconv(x, f, b, **o)
            grads = vl_nnconv(x, f, b, d, **o)
            want_y, want_grads = expected[i % len(cases)]
            if not np.array_equal(y, want_y) or not all(
                    np.array_equal(g, w) for g, w in zip(grads, want_grads)):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_nan_and_inf_propagate():
    x, f, b, dzdy, opts = make(CASES[0], np.float64)
    x[2, 2, 0, 0] = np.nan
    x[0, 0, 1, 1] = np.inf
    y = vl_nnconv(x, f, b, **opts)
    ref = reference_conv(x, f, b, **opts)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y[:, :, :, 0]).sum() == 9 * 4  # every output touching the NaN
    assert not np.isnan(y[3:, 3:, :, 1]).any()


@pytest.mark.skipif(not OWN_KERNELS, reason="no own kernel on this CPU")
def test_implicit_gemm_skips_padding_only_for_finite_factors():
    # The implicit GEMMs skip the products of filter rows and columns with padding zeros; with an
    # infinite filter weight or derivative those products are NaN in MatConvNet's output and filter
    # derivative (im2row + GEMM), so they are computed then: the NaNs and infinities fall where the
    # reference puts them. (MatConvNet's data derivative, row2im, has no products with padding:
    # vl_nnconv takes it on im2row_gemm then, test_data_derivative_with_infinite_filters.)
    rng = np.random.default_rng(11)
    x = np.asfortranarray(rng.standard_normal((6, 7, 32, 2), dtype=np.float32))
    f = np.asfortranarray(rng.standard_normal((3, 3, 32, 4), dtype=np.float32))
    b = np.zeros(4, np.float32)
    dzdy = np.asfortranarray(rng.standard_normal((6, 7, 4, 2), dtype=np.float32))
    finite = validate_conv(x, f, b, dzdy, pad=1)
    for kernel in OWN_KERNELS:
        for backward in (False, True):
            plan = plan_conv(finite.geometry, np.float32, backward, kernel=kernel)
            assert plan.algorithm == ("implicit_backward" if backward else "implicit_gemm")
    f[0, 0, 3, 1] = np.inf     # filter row and column 0 reach only padding from output row and column 0
    dzdy[2, 0, 1, 0] = np.inf  # a derivative in output column 0
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference, as in MatConvNet
        want_y = reference_conv(x, f, b, pad=1)
        want = reference_conv(x, f, b, dzdy, pad=1)
    assert np.isnan(want_y[:, 0, 1, :]).all() and np.isnan(want_y[0, :, 1, :]).all() and np.isnan(want[1]).any()
    for kernel in OWN_KERNELS:
        fwd = validate_conv(x, f, b, pad=1)
        bwd = validate_conv(x, f, b, dzdy, pad=1)
        plan = plan_conv(fwd.geometry, np.float32, False, kernel=kernel)
        y = run_conv(fwd, plan)
        y_columns = run_conv(fwd, replace(plan, algorithm="implicit_columns"))
        got = run_conv(bwd, plan_conv(bwd.geometry, np.float32, True, kernel=kernel))
        for g, w in zip((y, y_columns) + tuple(got[1:]), (want_y, want_y) + tuple(want[1:])):
            g = np.reshape(g, w.shape)
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=kernel)
            np.testing.assert_array_equal(np.isinf(g), np.isinf(w), err_msg=kernel)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels, stride", [(32, 1), (3, 1), (32, 2)])
def test_data_derivative_with_infinite_filters(dtype, channels, stride):
    # With an infinite filter weight the data derivative has MatConvNet's infinities and NaNs
    # (row2im: products of dY and F only, no padding), whichever plan the finite case takes.
    rng = np.random.default_rng(12)
    x = np.asfortranarray(rng.standard_normal((6, 7, channels, 2)).astype(dtype))
    f = np.asfortranarray(rng.standard_normal((3, 3, channels, 4)).astype(dtype))
    b = np.zeros(4, dtype)
    y = vl_nnconv(x, f, b, pad=1, stride=stride)
    dzdy = np.asfortranarray(rng.standard_normal(y.shape).astype(dtype))
    dzdy[1, 1, 1, 0] = 0
    f[0, 0, 3 % channels, 1] = np.inf
    with np.errstate(invalid="ignore"):
        want = reference_conv(x, f, b, dzdy, pad=1, stride=stride)
    assert np.isinf(want[0]).any() and np.isnan(want[0]).any()
    for got in (vl_nnconv(x, f, b, dzdy, pad=1, stride=stride),
                (vl_nnconv(x, f, b, dzdy, pad=1, stride=stride, NoDerFilters=True, NoDerBiases=True)[0],)):
        np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(want[0]))
        np.testing.assert_array_equal(np.isinf(got[0]), np.isinf(want[0]))
    problem = validate_conv(x, f, b, dzdy, pad=1, stride=stride)
    correlating = plan_conv(problem.geometry, dtype, True, data_only=True).algorithm in cnnx.conv._CORRELATING_BACKWARD
    assert correlating == (stride == 1 and channels == 32)  # the case the routing is for
    if correlating:
        assert cnnx.conv._data_derivative_plan(problem).algorithm == "im2row_gemm"


def test_identity_filters_pad_subsample_and_add_bias():
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2, 1, order="F")
    b = np.array([10, 20], np.float32)
    y = vl_nnconv(x, None, b, pad=[1, 0, 0, 1], stride=2)
    expected = np.zeros((2, 2, 2, 1), np.float32)
    expected[1, :, :, 0] = x[1, [0, 2], :, 0]
    expected += b.reshape(1, 1, 2, 1)
    np.testing.assert_array_equal(y, expected)


def test_empty_batch():
    x = np.zeros((5, 5, 3, 0), np.float32)
    f = np.ones((3, 3, 3, 2), np.float32)
    b = np.ones(2, np.float32)
    assert vl_nnconv(x, f, b).shape == (3, 3, 2, 0)
    dx, df, db = vl_nnconv(x, f, b, np.zeros((3, 3, 2, 0), np.float32))
    assert dx.shape == x.shape
    np.testing.assert_array_equal(df, np.zeros_like(f))
    np.testing.assert_array_equal(db, np.zeros_like(b))


X = np.zeros((5, 5, 4, 2), np.float32)
F = np.zeros((3, 3, 4, 6), np.float32)
B = np.zeros(6, np.float32)


@pytest.mark.parametrize("call, error, message", [
    (lambda: vl_nnconv(np.zeros(5, np.float32), F, B), ValueError,
     'vl_nnconv: X must have 2 to 4 dimensions (H x W x C x N), got 1 ((5,))'),
    (lambda: vl_nnconv(np.zeros((5, 5, 4, 2, 1), np.float32), F, B), ValueError,
     'vl_nnconv: X must have 2 to 4 dimensions (H x W x C x N), got 5 ((5, 5, 4, 2, 1))'),
    (lambda: vl_nnconv(X, np.zeros((3, 3, 4, 6, 2), np.float32), B), ValueError,
     'vl_nnconv: F must have 2 to 4 dimensions (H x W x C x N), got 5 ((3, 3, 4, 6, 2))'),
    (lambda: vl_nnconv(X, np.zeros((3, 3, 3, 6), np.float32), B), ValueError,
     'vl_nnconv: F has 3 channels but X has 4 (C must be a multiple of FC)'),
    (lambda: vl_nnconv(X, np.zeros((3, 3, 2, 5), np.float32), B[:5]), ValueError,
     'vl_nnconv: F has 5 filters, not a multiple of the 2 groups (C / FC)'),
    (lambda: vl_nnconv(X, F, B, pad=-1), ValueError, 'vl_nnconv: Pad must be non-negative, got [-1, -1, -1, -1]'),
    (lambda: vl_nnconv(X, F, B, pad=[1, 2]), ValueError,
     'vl_nnconv: Pad must have 1 or 4 elements [TOP BOTTOM LEFT RIGHT], got 2'),
    (lambda: vl_nnconv(X, F, B, stride=0), ValueError, 'vl_nnconv: Stride must be at least 1, got [0, 0]'),
    (lambda: vl_nnconv(X, F, B, dilate=[1, 0]), ValueError, 'vl_nnconv: Dilate must be at least 1, got [1, 0]'),
    (lambda: vl_nnconv(X, F, B, dilate=3), ValueError,
     'vl_nnconv: F (7 x 7 with dilation) is larger than X (5 x 5 including padding)'),
    (lambda: vl_nnconv(X, np.zeros((6, 3, 4, 6), np.float32), B), ValueError,
     'vl_nnconv: F (6 x 3 with dilation) is larger than X (5 x 5 including padding)'),
    (lambda: vl_nnconv(X, None, np.zeros(4, np.float32), dilate=2), ValueError,
     'vl_nnconv: Dilate must be 1 when F is empty (the identity filter bank)'),
    (lambda: vl_nnconv(X, F.astype(np.float64), B), TypeError,
     'vl_nnconv: F is float64 but X is float32; all arrays must share one dtype'),
    (lambda: vl_nnconv(X, F, B.astype(np.float64)), TypeError,
     'vl_nnconv: B is float64 but X is float32; all arrays must share one dtype'),
    (lambda: vl_nnconv(X.astype(np.int32), F, B), TypeError,
     'vl_nnconv: X must be a float32 or float64 array, got an integer array (int32)'),
    (lambda: vl_nnconv(X.astype(np.complex64), F, B), TypeError,
     'vl_nnconv: X must be a float32 or float64 array, got a complex array (complex64)'),
    (lambda: vl_nnconv(X, F, np.zeros(5, np.float32)), ValueError,
     'vl_nnconv: B has 5 elements but there are 6 filters (None or [] for no biases)'),
    (lambda: vl_nnconv(X, None, B), ValueError,
     'vl_nnconv: B has 6 elements but the identity filter bank (F empty) has C = 4 filters'),
    (lambda: vl_nnconv(X, F, B, np.zeros((3, 3, 6, 3), np.float32)), ValueError,
     'vl_nnconv: DZDY has shape (3, 3, 6, 3) but Y has shape (3, 3, 6, 2)'),
    (lambda: vl_nnconv(X, F, B, np.zeros((3, 3, 6, 2), np.float64)), TypeError,
     'vl_nnconv: DZDY is float64 but X is float32; all arrays must share one dtype'),
    (lambda: vl_nnconv(X, F, B, "Padding", 1), TypeError,
     "vl_nnconv: unknown option 'Padding'. Valid options are: Pad, Stride, Dilate, NoDerData, NoDerFilters, "
     "NoDerBiases"),
    (lambda: vl_nnconv(X, F, B, bogus=1), TypeError,
     "vl_nnconv: unknown option 'bogus'. Valid options are: Pad, Stride, Dilate, NoDerData, NoDerFilters, NoDerBiases"),
    (lambda: vl_nnconv(X, F, B, pad=2**40), ValueError,
     'vl_nnconv: Y would have 58028439341660530060296300 elements, more than can be indexed'),
    (lambda: vl_nnconv(X, F, B, pad=[2**31, 2**31, 0, 0]), ValueError,
     'vl_nnconv: the im2row matrix has a dimension of 12884901897, more than BLAS can take (2^31 - 1)'),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=exact(message)):
        call()
