"""Tests of vl_nndropout: mask values and statistics, reproducibility, derivatives and errors."""
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnx
from cnnx import vl_nndropout
from cnnx.testing import check_derivative


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"


DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (7, 9, 2), (13, 4), (50,)])
def test_forward_is_mask_times_x(dtype, rate, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    y, mask = vl_nndropout(x, "rate", rate, "seed", 3)
    assert y.shape == mask.shape == x.shape
    assert y.dtype == mask.dtype == dtype
    scale = dtype(1 / (1 - rate))
    assert set(np.unique(mask)) <= {dtype(0), scale}
    np.testing.assert_array_equal(y, mask * x)
    if rate == 0:
        np.testing.assert_array_equal(mask, np.ones_like(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_mask_times_dzdy(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6, 3, 2)).astype(dtype)
    dzdy = rng.standard_normal(x.shape).astype(dtype)
    _, mask = vl_nndropout(x, rate=0.3, seed=4)
    dzdx = vl_nndropout(x, dzdy, "mask", mask)
    assert dzdx.dtype == dtype and dzdx.shape == x.shape
    np.testing.assert_array_equal(dzdx, mask * dzdy)
    np.testing.assert_array_equal(vl_nndropout(x, dzdy=dzdy, MASK=mask), dzdx)
    y, drawn = vl_nndropout(x, "mask", [], "seed", 4, "rate", 0.3)  # [] is MatConvNet's "no mask"
    np.testing.assert_array_equal(drawn, mask)
    np.testing.assert_array_equal(y, mask * x)


def test_forward_with_given_mask_uses_it():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 2))
    mask = np.where(rng.random(x.shape) < 0.5, 0.0, 2.0)
    y, returned = vl_nndropout(x, [], "Mask", mask)
    np.testing.assert_array_equal(y, mask * x)
    np.testing.assert_array_equal(returned, mask)


def test_default_rate_is_one_half():
    x = np.ones(100_000, dtype=np.float32)
    y, mask = vl_nndropout(x, seed=5)
    np.testing.assert_array_equal(y, mask)
    assert set(np.unique(mask)) == {0.0, 2.0}
    assert abs(np.mean(mask > 0) - 0.5) < 5 * np.sqrt(0.25 / x.size)


def test_c_ordered_and_strided_inputs():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((8, 6, 5, 4))
    for x in (np.ascontiguousarray(base), base[::2, :, 1:], base.transpose(3, 1, 0, 2)):
        y, mask = vl_nndropout(x, rate=0.4, seed=7)
        np.testing.assert_array_equal(y, mask * x)
        dzdy = rng.standard_normal(x.shape)
        np.testing.assert_array_equal(vl_nndropout(x, dzdy, mask=mask), mask * dzdy)


def test_nan_and_inf_propagate():
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 50, dtype=np.float32)
    y, mask = vl_nndropout(x, rate=0.5, seed=8)
    with np.errstate(invalid="ignore"):
        expected = mask * x  # 0 * inf is NaN, as in MatConvNet's mask .* x
    np.testing.assert_array_equal(y, expected)
    assert np.isnan(y[(mask == 0) & np.isinf(x)]).all()


def test_empty_input():
    y, mask = vl_nndropout(np.zeros((0, 4), dtype=np.float32), seed=1)
    assert y.shape == mask.shape == (0, 4)


# ---------------------------------------------------------------- statistics of the generator
@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.9])
def test_fraction_kept_matches_one_minus_rate(rate):
    n = 1_000_000
    _, mask = vl_nndropout(np.ones(n, dtype=np.float32), rate=rate, seed=11)
    kept = np.mean(mask > 0)
    assert abs(kept - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)


def test_masks_for_increasing_rates_are_nested():
    # one seed gives one u per element: raising the rate only drops more elements (u >= rate)
    x = np.ones((64, 64), dtype=np.float64)
    kept = [vl_nndropout(x, rate=r, seed=12)[1] > 0 for r in (0.0, 0.2, 0.4, 0.6, 0.8)]
    for looser, stricter in zip(kept, kept[1:]):
        assert np.all(looser | ~stricter)
        assert np.sum(stricter) < np.sum(looser)


def test_per_element_uniformity_and_independence():
    # Across many seeds, each element is kept with probability 1 - rate, independently of its
    # neighbours; the u of one element, recovered from the rates it survives, is uniform.
    seeds, n, rate = 4000, 40, 0.3
    x = np.ones(n, dtype=np.float32)
    kept = np.array([vl_nndropout(x, rate=rate, seed=s)[1] > 0 for s in range(seeds)])
    per_element = kept.mean(axis=0)
    sigma = np.sqrt(rate * (1 - rate) / seeds)
    assert np.all(np.abs(per_element - (1 - rate)) < 5 * sigma)
    chi2 = np.sum((per_element - (1 - rate)) ** 2 / sigma**2)  # ~ chi-square with n dof
    assert chi2 < n + 6 * np.sqrt(2 * n)
    neighbours = np.corrcoef(kept[:, :-1].ravel(), kept[:, 1:].ravel())[0, 1]
    assert abs(neighbours) < 5 / np.sqrt(seeds * (n - 1))
    rates = np.linspace(0.05, 0.95, 19)
    survived = np.array([[vl_nndropout(x[:1], rate=r, seed=s)[1][0] > 0 for r in rates] for s in range(1000)])
    fraction = survived.mean(axis=0)
    assert np.all(np.abs(fraction - (1 - rates)) < 5 * np.sqrt(rates * (1 - rates) / 1000) + 1e-12)


# ---------------------------------------------------------------- seeds and reproducibility
def test_same_seed_same_mask_different_seed_different_mask():
    x = np.ones((10, 10, 3), dtype=np.float32)
    _, m1 = vl_nndropout(x, seed=21)
    _, m2 = vl_nndropout(x, "Seed", 21)
    _, m3 = vl_nndropout(x, seed=22)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, m3)
    _, big = vl_nndropout(x, seed=2**64 - 1)
    assert set(np.unique(big)) == {0.0, 2.0}


def test_rng_and_default_source():
    x = np.ones((20, 20), dtype=np.float64)
    _, m1 = vl_nndropout(x, rng=np.random.default_rng(5))
    _, m2 = vl_nndropout(x, "rng", np.random.default_rng(5))
    np.testing.assert_array_equal(m1, m2)
    rng = np.random.default_rng(5)
    _, m3 = vl_nndropout(x, rng=rng)
    _, m4 = vl_nndropout(x, rng=rng)  # the generator advanced: a new mask
    assert not np.array_equal(m3, m4)
    _, d1 = vl_nndropout(x)
    _, d2 = vl_nndropout(x)
    assert not np.array_equal(d1, d2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_independent_of_thread_count(dtype, restore_threads):
    x = np.random.default_rng(9).standard_normal((40, 40, 16, 3)).astype(dtype)  # threaded size
    dzdy = np.random.default_rng(10).standard_normal(x.shape).astype(dtype)
    outputs = []
    for threads in (1, 2):
        cnnx.set_num_threads(threads)
        y, mask = vl_nndropout(x, rate=0.35, seed=123)
        outputs.append((y, mask, vl_nndropout(x, dzdy, mask=mask)))
    for one, two in zip(*outputs):
        assert one.tobytes() == two.tobytes()


def test_concurrent_calls_from_python_threads():
    x = np.random.default_rng(13).standard_normal((32, 32, 16, 4)).astype(np.float32)
    expected = [vl_nndropout(x, rate=0.5, seed=s) for s in range(6)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda s: vl_nndropout(x, rate=0.5, seed=s % 6), range(18)))
    for s, (y, mask) in enumerate(got):
        assert y.tobytes() == expected[s % 6][0].tobytes()
        assert mask.tobytes() == expected[s % 6][1].tobytes()


# ---------------------------------------------------------------- derivatives
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 4, 3, 2), (6, 5, 3)])
def test_derivative(dtype, shape):
    rng = np.random.default_rng(14)
    x = rng.standard_normal(shape).astype(dtype)
    dzdy = rng.standard_normal(shape).astype(dtype)
    _, mask = vl_nndropout(x, rate=0.5, seed=15)
    g = lambda t: vl_nndropout(t, mask=mask)[0]
    dzdx = vl_nndropout(x, dzdy, mask=mask)
    check_derivative(g, x, dzdy, dzdx)
    if dtype == np.float64:
        check_derivative(g, x, dzdy, dzdx, method="central", rtol=1e-9)


# ---------------------------------------------------------------- errors
def test_errors_name_the_argument():
    x = np.ones((3, 4, 2), dtype=np.float32)
    _, mask = vl_nndropout(x, seed=1)
    with pytest.raises(TypeError, match=exact(
            'vl_nndropout: X must be a float32 or float64 array, got an integer array (int16)')):
        vl_nndropout(np.ones((3, 4), dtype=np.int16))
    with pytest.raises(TypeError, match=exact(
            'vl_nndropout: X must be a float32 or float64 array, got a complex array (complex128)')):
        vl_nndropout(np.ones((3, 4), dtype=np.complex128))
    for rate in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=exact(f"vl_nndropout: Rate must be in [0, 1), got {rate!r}")):
            vl_nndropout(x, rate=rate)
    with pytest.raises(ValueError, match=exact(
            "vl_nndropout: the backward call needs the forward pass's MASK ('mask', mask)")):
        vl_nndropout(x, np.ones_like(x))
    with pytest.raises(ValueError, match=exact(
            'vl_nndropout: MASK has shape (2, 4, 2) but X has shape (3, 4, 2)')):
        vl_nndropout(x, np.ones_like(x), mask=mask[:2])
    with pytest.raises(TypeError, match=exact(
            'vl_nndropout: MASK is float64 but X is float32; all arrays must share one dtype')):
        vl_nndropout(x, np.ones_like(x), mask=mask.astype(np.float64))
    with pytest.raises(ValueError, match=exact(
            'vl_nndropout: MASK has shape (4, 3, 2) but X has shape (3, 4, 2)')):
        vl_nndropout(x, mask=np.ones((4, 3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=exact('vl_nndropout: DZDY has shape (3, 4) but X has shape (3, 4, 2)')):
        vl_nndropout(x, np.ones((3, 4), dtype=np.float32), mask=mask)
    with pytest.raises(TypeError, match=exact(
            'vl_nndropout: DZDY is float64 but X is float32; all arrays must share one dtype')):
        vl_nndropout(x, np.ones(x.shape), mask=mask)
    with pytest.raises(TypeError, match=exact('vl_nndropout: Seed must be an integer, got 1.5')):
        vl_nndropout(x, seed=1.5)
    with pytest.raises(TypeError, match=exact('vl_nndropout: Seed must be an integer, got True')):
        vl_nndropout(x, seed=True)
    with pytest.raises(ValueError, match=exact('vl_nndropout: Seed must be in [0, 2^64), got -1')):
        vl_nndropout(x, seed=-1)
    with pytest.raises(ValueError, match=exact(
            'vl_nndropout: Seed must be in [0, 2^64), got 18446744073709551616')):
        vl_nndropout(x, seed=2**64)
    with pytest.raises(TypeError, match=exact(
            'vl_nndropout: Rng must be a numpy.random.Generator, got RandomState')):
        vl_nndropout(x, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match=exact('vl_nndropout: give Seed or Rng, not both')):
        vl_nndropout(x, seed=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=exact(
            'vl_nndropout: Seed and Rng draw a mask; they cannot be combined with Mask')):
        vl_nndropout(x, seed=1, mask=mask)
    with pytest.raises(TypeError, match=exact(
            "vl_nndropout: unknown option 'probability'. Valid options are: Rate, Mask, Seed, Rng, Out")):
        vl_nndropout(x, "probability", 0.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_writes_over_x_or_dzdy_with_the_same_bits(dtype):
    # vl_simplenn writes dropout's output over its freed input and its derivative over the freed
    # output derivative; the backward call reads only x's shape and dtype, so the mask stands in.
    rng = np.random.default_rng(12)
    x = np.asfortranarray(rng.standard_normal((6, 5, 3, 2)).astype(dtype))
    dzdy = np.asfortranarray(rng.standard_normal(x.shape).astype(dtype))
    y, mask = vl_nndropout(x, rate=0.4, seed=9)
    dzdx = vl_nndropout(x, dzdy, mask=mask)
    target = x.copy(order="F")
    written, same_mask = vl_nndropout(target, rate=0.4, seed=9, out=target)
    assert written is target and target.tobytes() == y.tobytes() and same_mask.tobytes() == mask.tobytes()
    target = x.copy(order="F")
    written, given = vl_nndropout(target, "mask", mask, "out", target)
    assert written is target and given is mask and target.tobytes() == y.tobytes()
    target = dzdy.copy(order="F")
    assert vl_nndropout(mask, target, mask=mask, out=target) is target
    assert target.tobytes() == dzdx.tobytes()


def test_out_errors():
    x = np.asfortranarray(np.ones((4, 3, 2), np.float32))
    y, mask = vl_nndropout(x, seed=1)
    with pytest.raises(ValueError, match=exact("vl_nndropout: OUT must not overlap MASK")):
        vl_nndropout(x, np.ones_like(x), mask=mask, out=mask)
    with pytest.raises(ValueError, match=exact("vl_nndropout: OUT must not overlap MASK")):
        vl_nndropout(x, mask=mask, out=mask)
    with pytest.raises(TypeError, match=exact("vl_nndropout: OUT must be a float32 array, got a float64 array")):
        vl_nndropout(x, seed=1, out=np.ones(x.shape, order="F"))
    with pytest.raises(ValueError, match=exact(
            "vl_nndropout: OUT must be a writeable, aligned, Fortran-contiguous array of shape (4, 3, 2); "
            "it is not Fortran-contiguous")):
        vl_nndropout(x, np.ones_like(x), mask=mask, out=np.ones((4, 3, 2), np.float32))
    flat = np.ones(25, np.float32)
    dzdy = flat[1:].reshape(x.shape, order="F")
    with pytest.raises(ValueError, match=exact("vl_nndropout: OUT overlaps an input without being it")):
        vl_nndropout(x, dzdy, mask=mask, out=flat[:24].reshape(x.shape, order="F"))
