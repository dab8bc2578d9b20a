"""DagNN's spatial-transformer blocks: BilinearSampler (vl_nnbilinearsampler) and the grid generators
AffineGridGenerator and UniformScalingGridGenerator, against loop references of MatConvNet's
formulas, PyTorch's affine_grid, finite differences, sizes and model files."""
import os
import re

import numpy as np
import pytest

from cnnx import vl_nnbilinearsampler
from cnnx.dagnn import AffineGridGenerator, BilinearSampler, DagNN, UniformScalingGridGenerator
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]


def exact(message):
    return f"^{re.escape(message)}$"


def base_point(k, count):
    """MATLAB's linspace(-1, 1, count)(k) (0-based k); one point is 1."""
    return 1.0 if count == 1 else -1.0 + 2.0 * k / (count - 1)


def affine_reference(theta, Ho, Wo):
    """grid[:, i, j, n] = (c1 v + c2 u + c5, c3 v + c4 u + c6), point by point."""
    N = theta.shape[3]
    grid = np.zeros((2, Ho, Wo, N))
    for n in range(N):
        c1, c2, c3, c4, c5, c6 = theta[0, 0, :, n]
        for i in range(Ho):
            for j in range(Wo):
                v, u = base_point(i, Ho), base_point(j, Wo)
                grid[:, i, j, n] = (c1 * v + c2 * u + c5, c3 * v + c4 * u + c6)
    return grid


def scaling_reference(theta, Ho, Wo):
    """grid[:, i, j, n] = (s v + tv, s u + tu), point by point."""
    N = theta.shape[3]
    grid = np.zeros((2, Ho, Wo, N))
    for n in range(N):
        s, tv, tu = theta[0, 0, :, n]
        for i in range(Ho):
            for j in range(Wo):
                grid[:, i, j, n] = (s * base_point(i, Ho) + tv, s * base_point(j, Wo) + tu)
    return grid


GENERATORS = [(AffineGridGenerator, 6, affine_reference), (UniformScalingGridGenerator, 3, scaling_reference)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make, count, reference", GENERATORS)
@pytest.mark.parametrize("Ho, Wo", [(4, 3), (1, 5), (6, 1)])
def test_generators_match_matconvnets_formulas(dtype, make, count, reference, Ho, Wo):
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((1, 1, count, 3)).astype(dtype)
    block = make(Ho=Ho, Wo=Wo)
    grid = block.forward([theta], [])[0]
    assert grid.dtype == dtype and grid.shape == (2, Ho, Wo, 3) and grid.flags.f_contiguous
    assert block.get_output_sizes([theta.shape], []) == [grid.shape]
    np.testing.assert_allclose(grid, reference(theta.astype(np.float64), Ho, Wo),
                               rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6 if dtype == np.float32 else 1e-14)
    dzdy = rng.standard_normal(grid.shape).astype(dtype)
    (dtheta,), dparams = block.backward([theta], [], [dzdy])
    assert dtheta.shape == theta.shape and dtheta.dtype == dtype and dparams == []
    if dtype == np.float64:
        check_derivative(lambda t: block.forward([t], [])[0], theta, dzdy, dtheta, method="central", rtol=1e-9)


def test_affine_generator_against_torch_affine_grid():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    theta = rng.standard_normal((1, 1, 6, 2))
    grid = AffineGridGenerator(Ho=5, Wo=4).forward([theta], [])[0]
    c = theta[0, 0]
    # torch's theta maps (x, y) = (u, v): u' = c4 u + c3 v + c6, v' = c2 u + c1 v + c5.
    torch_theta = torch.tensor(np.stack([[c[3], c[2], c[5]], [c[1], c[0], c[4]]]).transpose(2, 0, 1).copy())
    torch_grid = torch.nn.functional.affine_grid(torch_theta, (2, 1, 5, 4), align_corners=True).numpy()
    np.testing.assert_allclose(grid, torch_grid.transpose(3, 1, 2, 0)[::-1], rtol=1e-12, atol=1e-12)


def test_identity_transform_resamples_the_image_itself():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4, 3, 2))
    net = DagNN()
    net.add_layer("grid", AffineGridGenerator(Ho=5, Wo=4), "theta", "grid")
    net.add_layer("sample", BilinearSampler(), ["x", "grid"], "y")
    net.conserve_memory = False
    identity = np.tile(np.array([1.0, 0, 0, 1, 0, 0]).reshape(1, 1, 6, 1), (1, 1, 1, 2))
    net.eval({"x": x, "theta": identity})
    np.testing.assert_allclose(net.get_var("y").value, x, atol=1e-12)
    scaling = UniformScalingGridGenerator(Ho=5, Wo=4).forward([np.array([1.0, 0, 0]).reshape(1, 1, 3, 1)], [])[0]
    np.testing.assert_allclose(scaling[..., 0], net.get_var("grid").value[..., 0], atol=1e-15)


@pytest.mark.parametrize("make, count", [(AffineGridGenerator, 6), (UniformScalingGridGenerator, 3)])
def test_transformer_network_derivatives(make, count):
    """theta -> grid -> sampler: finite differences through the whole network, both inputs."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5, 2, 2))
    theta = rng.standard_normal((1, 1, count, 4)) * 0.3
    theta[0, 0, 0] += 0.7  # mostly inside the image
    net = DagNN()
    net.add_layer("grid", make(Ho=4, Wo=3), "theta", "grid")
    net.add_layer("sample", BilinearSampler(), ["x", "grid"], "y")
    net.input_derivatives = True
    net.conserve_memory = False
    sizes = net.get_var_sizes({"x": x.shape, "theta": theta.shape})
    assert sizes["grid"] == (2, 4, 3, 4) and sizes["y"] == (4, 3, 2, 4)
    dzdy = rng.standard_normal((4, 3, 2, 4))

    def run(x_value, theta_value):
        net.eval({"x": x_value, "theta": theta_value})
        return net.get_var("y").value

    net.eval({"x": x, "theta": theta}, {"y": dzdy})
    dx, dtheta = net.get_var("x").der, net.get_var("theta").der
    grid = net.get_var("grid").value
    np.testing.assert_array_equal(dx, vl_nnbilinearsampler(x, grid, dzdy)[0])
    check_derivative(lambda t: run(t, theta), x, dzdy, dx, method="central", rtol=1e-8)
    check_derivative(lambda t: run(x, t), theta, dzdy, dtheta, method="central", rtol=1e-6)


def test_blocks_round_trip_through_model_files(tmp_path):
    net = DagNN()
    net.add_layer("grid", UniformScalingGridGenerator(Ho=3, Wo=7), "theta", "grid")
    net.add_layer("affine", AffineGridGenerator(Ho=2, Wo=5), "theta6", "grid2")
    net.add_layer("sample", BilinearSampler(), ["x", "grid"], "y")
    assert net.saveobj()["layers"][0]["block"] == {"Ho": 3.0, "Wo": 7.0}
    path = os.path.join(tmp_path, "net.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)
    for a, b in zip(net.layers, loaded.layers):
        assert type(a.block) is type(b.block) and (a.inputs, a.outputs) == (b.inputs, b.outputs)
    assert (loaded.layers[0].block.Ho, loaded.layers[0].block.Wo) == (3, 7)
    assert (loaded.layers[1].block.Ho, loaded.layers[1].block.Wo) == (2, 5)


@pytest.mark.parametrize("make, error, message", [
    (lambda: AffineGridGenerator(Ho=-1), ValueError,
     "AffineGridGenerator: Ho must be a non-negative whole number, got -1"),
    (lambda: UniformScalingGridGenerator(Wo=2.5), ValueError,
     "UniformScalingGridGenerator: Wo must be a non-negative whole number, got 2.5"),
    (lambda: AffineGridGenerator(Ho=2, Wo=2).forward([np.zeros((1, 1, 3, 2))], []), ValueError,
     "AffineGridGenerator: the transformation parameters must be 1 x 1 x 6 x N, got shape (1, 1, 3, 2)"),
    (lambda: UniformScalingGridGenerator(Ho=2, Wo=2).forward([np.zeros((1, 1, 3, 2), int)], []), TypeError,
     "UniformScalingGridGenerator: the transformation parameters must be a float32 or float64 array, got an "
     "integer array (int64)"),
    (lambda: AffineGridGenerator().load({"height": 3}), ValueError,
     "AffineGridGenerator has no property 'height' (its properties: Ho, Wo)"),
])
def test_block_errors(make, error, message):
    with pytest.raises(error, match=exact(message)):
        make()
