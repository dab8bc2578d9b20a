"""vl_nnconvt against a NumPy reference, finite differences, PyTorch and MatConvNet's outputs."""
import os
import re

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnconv, vl_nnconvt
from cnnx.testing import check_derivative

DATA = os.path.join(os.path.dirname(__file__), "data", "mcn_convt.mat")

# (x shape, f shape, upsample, crop, groups)
GRIDS = [
    ((5, 6, 2, 2), (3, 4, 3, 2), (1, 1), (0, 0, 0, 0), 1),
    ((4, 5, 3, 3), (4, 3, 2, 3), (2, 3), (1, 2, 0, 1), 1),
    ((3, 4, 6, 2), (3, 3, 2, 6), (2, 2), (1, 1, 1, 1), 3),
    ((1, 1, 4, 5), (5, 2, 3, 4), (3, 1), (2, 1, 0, 1), 2),
    ((4, 4, 3, 1), (1, 1, 2, 3), (3, 2), (0, 0, 0, 0), 1),
]


def convt_reference(x, f, b, upsample, crop, groups):
    """Each input pixel adds its weighted filters at steps of Upsample, then the border is cropped."""
    H, W, C, N = x.shape
    FH, FW, K, _ = f.shape
    uy, ux = upsample
    D = C // groups
    full = np.zeros(((H - 1) * uy + FH, (W - 1) * ux + FW, K * groups, N))
    for d in range(C):
        g = d // D
        for p in range(H):
            for q in range(W):
                patch = f[:, :, :, d, None] * x[p, q, d, :]
                full[p * uy:p * uy + FH, q * ux:q * ux + FW, g * K:(g + 1) * K, :] += patch
    ct, cb, cl, cr = crop
    y = full[ct:full.shape[0] - cb, cl:full.shape[1] - cr]
    return y + (0 if b is None else b.reshape(1, 1, -1, 1))


def random_case(rng, xs, fs, groups, dtype=np.float64):
    x = rng.standard_normal(xs).astype(dtype)
    f = rng.standard_normal(fs).astype(dtype)
    b = rng.standard_normal(fs[2] * groups).astype(dtype)
    return x, f, b


@pytest.mark.parametrize("xs, fs, up, crop, groups", GRIDS)
def test_matches_numpy_reference_and_is_the_adjoint_of_conv(xs, fs, up, crop, groups):
    rng = np.random.default_rng(0)
    x, f, b = random_case(rng, xs, fs, groups)
    opts = dict(upsample=up, crop=crop, num_groups=groups)
    y = vl_nnconvt(x, f, b, **opts)
    np.testing.assert_allclose(y, convt_reference(x, f, b, up, crop, groups), rtol=1e-12, atol=1e-12)
    # <convt(x), v> = <x, conv(v)>: the data derivative is vl_nnconv's forward.
    v = rng.standard_normal(y.shape)
    conv_v = vl_nnconv(v, f, None, stride=up, pad=crop)
    assert np.isclose(np.sum((y - b.reshape(1, 1, -1, 1)) * v), np.sum(x * conv_v), rtol=1e-12)
    dzdx, dzdf, dzdb = vl_nnconvt(x, f, b, v, **opts)
    np.testing.assert_allclose(dzdx, conv_v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dzdb, v.sum(axis=(0, 1, 3)), rtol=1e-12)
    assert dzdf.shape == f.shape and dzdb.shape == b.shape


@pytest.mark.parametrize("xs, fs, up, crop, groups", GRIDS[1:4])
def test_derivatives(xs, fs, up, crop, groups):
    rng = np.random.default_rng(1)
    x, f, b = random_case(rng, xs, fs, groups)
    opts = dict(upsample=up, crop=crop, num_groups=groups)
    dzdy = rng.standard_normal(vl_nnconvt(x, f, b, **opts).shape)
    dzdx, dzdf, dzdb = vl_nnconvt(x, f, b, dzdy, **opts)
    check_derivative(lambda t: vl_nnconvt(t, f, b, **opts), x, dzdy, dzdx, method="central")
    check_derivative(lambda t: vl_nnconvt(x, t, b, **opts), f, dzdy, dzdf, method="central")
    check_derivative(lambda t: vl_nnconvt(x, f, t, **opts), b, dzdy, dzdb, method="central")


@pytest.mark.parametrize("xs, fs, up, crop, groups", GRIDS)
def test_against_torch(xs, fs, up, crop, groups):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, f, b = random_case(rng, xs, fs, groups)
    y = vl_nnconvt(x, f, b, upsample=up, crop=crop, num_groups=groups)
    # torch: input (N, C, H, W), weight (C, K, FH, FW); Crop is output cropping (torch's padding
    # is symmetric, so crop the full output here).
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    tw = torch.from_numpy(np.ascontiguousarray(f.transpose(3, 2, 0, 1)))
    full = torch.nn.functional.conv_transpose2d(tx, tw, torch.from_numpy(b), stride=up, groups=groups)
    ct, cb, cl, cr = crop
    ref = full.numpy().transpose(2, 3, 1, 0)
    ref = ref[ct:ref.shape[0] - cb, cl:ref.shape[1] - cr]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    if ct == cb and cl == cr:  # symmetric crops are torch's padding
        padded = torch.nn.functional.conv_transpose2d(tx, tw, torch.from_numpy(b), stride=up, groups=groups,
                                                      padding=(ct, cl))
        np.testing.assert_allclose(y, padded.numpy().transpose(2, 3, 1, 0), rtol=1e-12, atol=1e-12)


def test_same_bits_at_any_thread_count():
    rng = np.random.default_rng(3)
    x, f, b = random_case(rng, (24, 24, 16, 8), (4, 4, 16, 16), 1, np.float32)
    dzdy = rng.standard_normal((48, 48, 16, 8)).astype(np.float32)
    results = []
    before = cnnx.get_num_threads()
    try:
        for n in (1, 2):
            cnnx.set_num_threads(n)
            results.append((vl_nnconvt(x, f, b, upsample=2, crop=1),)
                           + vl_nnconvt(x, f, b, dzdy, upsample=2, crop=1))
    finally:
        cnnx.set_num_threads(before)
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


def test_shapes_flags_and_zero_images():
    x = np.ones((3, 3, 2), np.float32)
    f = np.ones((2, 2, 4, 2), np.float32)
    y = vl_nnconvt(x, f, None, "Upsample", 2)
    assert y.shape == (6, 6, 4) and y.dtype == np.float32 and y.flags.f_contiguous
    dzdx, dzdf, dzdb = vl_nnconvt(x, f, None, y, "NoDerData", "Upsample", 2)
    assert dzdx is None and dzdf.shape == f.shape and dzdb is None
    y0 = vl_nnconvt(np.ones((3, 3, 2, 0)), np.ones((2, 2, 4, 2)), np.arange(4.0))
    assert y0.shape == (4, 4, 4, 0)
    dx0, df0, db0 = vl_nnconvt(np.ones((3, 3, 2, 0)), np.ones((2, 2, 4, 2)), np.arange(4.0), y0)
    assert dx0.shape == (3, 3, 2, 0) and not df0.any() and not db0.any()


def test_read_only_c_ordered_inputs():
    rng = np.random.default_rng(4)
    x, f, b = random_case(rng, (4, 5, 2, 2), (3, 3, 2, 2), 1)
    dzdy = rng.standard_normal((6, 7, 2, 2))
    expected = (vl_nnconvt(x, f, b),) + vl_nnconvt(x, f, b, dzdy)
    for a in (x, f, b, dzdy):
        a.flags.writeable = False
    got = (vl_nnconvt(np.ascontiguousarray(x), f, b),) + vl_nnconvt(x, f, b, dzdy=dzdy)
    for one, two in zip(expected, got):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("call, message", [
    (lambda: vl_nnconvt(np.ones((3, 3, 2)), None, None),
     "vl_nnconvt: F is empty; a transposed convolution needs filters (FH x FW x K x C)"),
    (lambda: vl_nnconvt(np.ones((3, 3, 2)), np.ones((2, 2, 1, 3)), None),
     "vl_nnconvt: F has 3 filters (its 4th dimension) but X has 2 channels (they must match)"),
    (lambda: vl_nnconvt(np.ones((3, 3, 2)), np.ones((2, 2, 1, 2)), None, num_groups=3),
     "vl_nnconvt: NumGroups (3) does not divide the 2 channels of X"),
    (lambda: vl_nnconvt(np.ones((3, 3, 2)), np.ones((2, 2, 1, 2)), None, num_groups=0),
     "vl_nnconvt: NumGroups must be at least 1, got 0"),
    (lambda: vl_nnconvt(np.ones((1, 3, 2)), np.ones((2, 2, 1, 2)), None, crop=[1, 1, 0, 0]),
     "vl_nnconvt: Crop [1, 1, 0, 0] leaves no output (Y would be 0 x 4; before cropping 2 x 4)"),
    (lambda: vl_nnconvt(np.ones((3, 3, 2)), np.ones((2, 2, 1, 2)), np.ones(2), num_groups=2, upsample=0),
     "vl_nnconvt: Upsample must be at least 1, got [0, 0]"),
    (lambda: vl_nnconvt(np.ones((3, 3, 2)), np.ones((2, 2, 1, 2)), np.ones(2)),
     "vl_nnconvt: B has 2 elements but Y has K * NumGroups = 1 channels (None or [] for no biases)"),
    (lambda: vl_nnconvt(np.ones((3, 3, 2)), np.ones((2, 2, 1, 2)), None, np.ones((3, 3))),
     "vl_nnconvt: DZDY has shape (3, 3) but Y has shape (4, 4, 1, 1)"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        call()


def load_reference():
    cases = scipy.io.loadmat(DATA, squeeze_me=False, struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


@pytest.mark.parametrize("case", load_reference())
def test_matches_matconvnet(case):
    """MatConvNet beta25's outputs; its skipped derivatives are 0 x 0 arrays, cnnx's None."""
    opts = [str(o.item()) if o.dtype.kind == "U" else o for o in case.opts.ravel()]
    tol = 1e-5 if case.x.dtype == np.float32 else 1e-12

    def close(got, expected):
        if expected.size == 0:
            assert got is None
            return
        assert got.dtype == expected.dtype
        # MATLAB drops trailing singleton dimensions.
        np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=tol,
                                   atol=tol * max(1.0, np.abs(expected).max()))

    close(vl_nnconvt(case.x, case.f, case.b, *opts), case.y)
    for got, expected in zip(vl_nnconvt(case.x, case.f, case.b, case.dzdy, *opts),
                             (case.dzdx, case.dzdf, case.dzdb)):
        close(got, expected)
