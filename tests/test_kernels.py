"""The kernel entry points (cnnx._ext): every dtype dispatch ends in a clear error.

Block functions never hand the kernels anything but float32/float64 arrays; these tests call
the kernels directly, as a later caller (or a mistake) might, with the arguments of a real
call except for the dtype.
"""
import re

import numpy as np
import pytest

from cnnx._ext import activations, conv, dropout, normalize, pdist, pool, sgd, softmax, softmaxloss

H, W, C, N = 4, 4, 2, 1
SIZES = (H, W, C, N, 1, 1, C, C, H, W, 1, 1, 0, 0, 1, 1)  # the identity bank


def calls(dtype):
    """(kernel name, call) for every kernel entry, every array of ``dtype``."""
    def a(*shape):
        return np.zeros(shape, dtype, order="F")
    flat = H * W * C * N
    return [
        ("activations.elementwise_forward", lambda: activations.elementwise_forward(
            activations.Activation.GELU, a(flat), a(flat), 0.0, 0.0, 1)),
        ("activations.elementwise_backward", lambda: activations.elementwise_backward(
            activations.Activation.RELU, a(flat), a(flat), a(flat), 0.0, 0.0, 1)),
        ("activations.relu_signs", lambda: activations.relu_signs(a(flat), a(flat), np.zeros((flat + 7) // 8, np.uint8),
                                                                  False, 0.0, 1)),
        ("activations.prelu_forward", lambda: activations.prelu_forward(a(H * W, C, N), a(C), a(H * W, C, N), 1)),
        ("activations.prelu_backward", lambda: activations.prelu_backward(
            a(H * W, C, N), a(C), a(H * W, C, N), a(H * W, C, N), np.zeros(C), 1)),
        ("dropout.dropout_forward", lambda: dropout.dropout_forward(a(flat), a(flat), a(flat), 1, 0, 1.0, 1)),
        ("dropout.multiply", lambda: dropout.multiply(a(flat), a(flat), a(flat), 1)),
        ("sgd.sgd_step", lambda: sgd.sgd_step(a(flat), a(flat), a(flat), a(flat), 0.5, 0.0, 0.9, 0.1, False, 1)),
        ("softmaxloss.categorical", lambda: softmaxloss.categorical(
            a(H * W, C, N), np.ones((1, 1, N), order="F"), None, 1.0, softmaxloss.CATEGORICAL["softmaxlog"], 1, 1)),
        ("softmaxloss.elementwise", lambda: softmaxloss.elementwise(
            a(flat), np.ones(flat), None, None, 1.0, softmaxloss.ELEMENTWISE["hinge"], 0.0, True, 1)),
        ("softmax.softmax", lambda: softmax.softmax(a(H * W, C, N), a(H * W, C, N), a(H * W, C, N), True, 1)),
        ("normalize.lrn", lambda: normalize.lrn(a(H * W, C, N), a(H * W, C, N), a(H * W, C, N), True, 5, 1.0, 1.0,
                                                0.75, 1)),
        ("normalize.noffset", lambda: normalize.noffset(a(H * W, C, N), a(H * W, C, N), a(H * W, C, N), True, 1.0,
                                                        0.5, 1)),
        ("normalize.lp", lambda: normalize.lp(a(C, H * W * N), a(C, H * W * N), a(H * W * N), a(C, H * W * N), True,
                                              True, 2.0, 0.01, 1)),
        ("softmax.sigmoid", lambda: softmax.sigmoid(a(flat), a(flat), a(flat), 1)),
        ("pdist.pdist_forward", lambda: pdist.pdist_forward(a(H * W, C, N), a(1, C, N), np.zeros((H * W, N), order="F"),
                                                            2.0, False, 1)),
        ("pdist.pdist_backward", lambda: pdist.pdist_backward(
            a(H * W, C, N), a(1, C, N), np.ones((H * W, N), order="F"), a(H * W, C, N), 2.0, False, 1e-6, 1)),
        ("pool.forward", lambda: pool.forward(a(flat), a(flat), None, C * N, H, W, H, W, 1, 1, 1, 1, 0, 0, False, 1)),
        ("pool.backward", lambda: pool.backward(a(flat), a(flat), a(flat), C * N, H, W, H, W, 1, 1, 1, 1, 0, 0,
                                                False, 1)),
        ("pool.route", lambda: pool.route(a(flat), np.zeros(flat, np.int32), a(flat), C * N, H, W, H, W, 1)),
        ("conv.conv_forward", lambda: conv.conv_forward(a(flat), a(1), a(1), a(flat), SIZES, True, False, False,
                                                        False, False, 1, W, -1, 0, 0, 1)),
        ("conv.conv_backward", lambda: conv.conv_backward(a(flat), a(1), a(flat), a(flat), a(1), a(1), SIZES, True,
                                                          False, True, False, False, 1, 1, -1, 0, 0, 1)),
        ("conv.conv_backward_shifted", lambda: conv.conv_backward_shifted(
            a(flat), a(C * C), a(flat), a(flat), a(C * C), a(C), SIZES, True, False, False, W, 1, -1, 0, 0, 1)),
        ("conv.fc_forward", lambda: conv.fc_forward(a(flat), a(flat), a(1), a(C), a(1), SIZES, False, True, 1, 1)),
        ("conv.fc_backward", lambda: conv.fc_backward(a(flat), a(flat), a(C), a(flat), a(flat), a(C), a(1), a(1),
                                                      SIZES, True, True, True, True, 1, 1, 1)),
    ]


NAMES = [name for name, _ in calls(np.float32)]


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.complex64, np.complex128, np.bool_,
                                   np.longdouble])
def test_unsupported_dtype_is_a_type_error_naming_the_kernel(index, dtype):
    name, call = calls(dtype)[index]
    message = (f"cnnx._ext.{name}: unsupported dtype {np.dtype(dtype)}; the kernels take float32 or "
               "float64")
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        call()


@pytest.mark.parametrize("kind", [-1, len(activations.Activation), 2**31 - 1])
@pytest.mark.parametrize("entry", ["elementwise_forward", "elementwise_backward"])
def test_an_unknown_activation_is_a_value_error(entry, kind):
    x = np.zeros(4, np.float32)
    arrays = (x, x.copy()) if entry == "elementwise_forward" else (x, x, x.copy())
    message = f"cnnx._ext.activations.{entry}: unknown activation {kind}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        getattr(activations, entry)(kind, *arrays, 0.0, 0.0, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_same_calls_run_in_float32_and_float64(dtype):
    for name, call in calls(dtype):
        call()  # no error: the arguments above are a real call
