"""vl_nnconv: convolution (correlation) with padding, stride, dilation and groups.

A call runs in three steps: ``validate_conv`` checks the arguments and gives a ``ConvProblem``
(the arrays, their ``ConvGeometry`` and what to compute); ``plan_conv`` chooses a ``ConvPlan``
(the algorithm and its blocking, from the sizes only); ``run_conv`` runs the plan in the kernels
of cnnx/_ext/conv.pyx. Tests build plans to run every algorithm on every shape it applies to.
"""
import os
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ._checks import (
    as_float_array,
    check_blas_dims,
    check_elements,
    common_dtype,
    fortran4,
    is_placeholder,
    out_shape,
    shape4,
)
from ._ext import conv as _kernel
from ._options import INT_OPTION_LIMIT, Option, parse_options, take_derivative
from ._shapes import window_output_size
from ._threads import CONV_FLOPS_PER_THREAD, blas_single_threaded, threads_for_work

_FNAME = "vl_nnconv"

_OPTIONS = {
    "pad": Option("pad4", (0, 0, 0, 0)),
    "stride": Option("pair", (1, 1)),
    "dilate": Option("pair", (1, 1)),
    "no_der_data": Option("flag", False, display="NoDerData"),
    "no_der_filters": Option("flag", False, display="NoDerFilters"),
    "no_der_biases": Option("flag", False, display="NoDerBiases"),
}

# Tuning constants, measured on the lenet, VGG and AlexNet layers. They depend on nothing but the
# problem size, so results never depend on the thread count.
#
# Forward: Y^T = F^T @ Xcol (im2col, patches contiguous) is the faster GEMM for these thin shapes
# (~90 vs ~70 GFLOP/s in OpenBLAS). im2col copies each patch from the image transposed to channels
# first, in runs of FH*FC values, and at stride 1 the backward pass works one column of taps wide
# (conv_backward_shifted: lenet conv2/conv3 ~30% faster than im2row + scatter). Below _PATCH_RUN
# values per run the copies are too short and the GEMMs too thin (FH*FC = 5 or 6: both passes
# 1.4-2.5x slower), and im2row's long runs of pixels win, except for strided layers (AlexNet
# conv1), where im2row's runs are strided too. At 15 (lenet conv1) the forward is ~6% faster.
_PATCH_RUN = 12
# At stride 1 across, the im2col forward runs one column of taps at a time (FW GEMMs over a matrix
# FW times smaller, one image each) from this many output pixels up: lenet conv3 (8x8) ~20% faster
# than im2col over 4 images per GEMM; smaller outputs keep several images per GEMM (the per-image
# GEMMs would get thinner still; not measured below 8x8).
_SHIFT_PIXELS = 64
# Large images are expanded a block of whole columns at a time, each block's matrix at most this
# big, so that it stays in cache (VGG: 14 MB per image otherwise; ~10% faster).
_BLOCK_BYTES = 1 << 20
# Images are stacked into one GEMM until it has this many rows (output pixels). At 8x8 outputs
# (lenet conv3) this changes nothing; at 2x2 outputs the backward pass runs ~25% faster.
_GEMM_ROWS = 256
# The filter/bias gradient is reduced over at most this many chunks of images, each with its own
# partial buffer, and the partials take at most _PARTIAL_BYTES in all.
_MAX_CHUNKS = 16
_PARTIAL_BYTES = 64 << 20
# The GEMM kernels. "blas" is SciPy's BLAS; the others are cnnx's own float32 micro-kernels
# (cnnx/_ext/gemm.h), one per instruction set, which the algorithms in _OWN_GEMM can run.
KERNELS = ("blas", "generic", "avx2", "avx512")
_OWN_GEMM = ("direct_1x1", "im2row_gemm", "im2col_gemm", "im2col_shifted", "shifted_stride1", "implicit_gemm",
             "implicit_columns", "implicit_backward")
_OWN_ONLY = ("implicit_gemm", "implicit_columns", "implicit_backward")  # algorithms with no BLAS form
# The implicit GEMM replaces these forward algorithms on cnnx's kernels (measured with AVX-512 on
# Zen 5, 1 thread: lenet conv1 1.8x, conv2 and conv3 ~1.2x, the stride-4 AlexNet and a stride-2
# 3x3 1.15-1.3x, the VGG layer alike); not im2row_gemm (short runs of taps: 3x3 filters on one
# channel ran 1.7x slower) nor direct_1x1 (no copy to save).
_IMPLICIT_REPLACES = ("im2col_shifted", "im2col_gemm")
# Where the output columns are whole tiles of rows (YH a multiple of the kernel's MR: 32 rows on
# AVX-512, 16 on AVX2), implicit_columns replaces implicit_gemm: it reads the image and writes Y
# in MatConvNet's layout, with no transposes (measured at 1 thread, Intel Xeon with AVX-512, as
# AVX-512 / AVX2 GFLOP/s: lenet conv1 119 -> 155 / 74 -> 85, NIN conv1 80 -> 96 / 59 -> 72, a 5x5
# 32 -> 32 layer on 32x32 156 -> 169 / 103 -> 113, lenet conv2 on AVX2 106 -> 112; with a last
# tile short of MR rows it ran slower: VGG's 56 rows 142 -> 125 / 99 -> 85).
# The implicit backward pass replaces shifted_stride1 on cnnx's kernels (measured as above, on a
# loaded machine: the filter gradient of lenet conv1-conv3 1.1-1.3x, the data gradient and the VGG
# layer alike within the noise; no expanded matrices).
_IMPLICIT_BACKWARD_REPLACES = ("shifted_stride1",)
# The implicit filter gradient skips padding by GEMMs over one filter column and a run of filter
# rows each, whose columns are those rows' FC taps: with fewer taps than this per filter column
# (FH*FC) the tiles are too narrow to pay (lenet conv1, FH*FC = 15: 73-75 -> 56 GFLOP/s; conv3,
# 160: 104-106 -> 118 with the rows skipped too; 1 thread, AMD Zen 4 with AVX-512).
_SKIP_MIN_TAPS = 64
# The data derivative's GEMM has FC rows: with fewer than this many channels per group most of a
# tile's rows are padding, and alone (no filter derivative in the call) it ran slower than BLAS
# (lenet conv1, FC = 3: 15 against 21 GFLOP/s; with the filter derivative the call is faster).
_OWN_DATA_MIN_CHANNELS = 8
# Where each kernel beats BLAS, measured on a Zen 5 EPYC against SciPy's OpenBLAS (which runs its
# AVX2 kernels there), on lenet conv1-conv3, the VGG and AlexNet layers, a stride-2 3x3, a 3x3 on
# one channel and a 1x1 layer: AVX-512 is 1.2-2.5x faster on every algorithm; AVX2 1.1-1.3x on the
# one-column-of-taps algorithms but up to 2x slower on im2col_gemm, im2row_gemm and direct_1x1;
# the portable kernel is slower everywhere, so it only runs when CNNX_ISA asks for it.
_FASTER_THAN_BLAS = {"avx512": _OWN_GEMM,
                     "avx2": ("im2col_shifted", "shifted_stride1", "implicit_gemm", "implicit_columns",
                              "implicit_backward")}
# The caches when the OS does not say (bytes): L1 data, L2.
_DEFAULT_CACHE = {1: 32 << 10, 2: 512 << 10}


def _cache_size(level):
    """Bytes of this core's data cache of ``level`` (1 or 2) from Linux's sysfs, else _DEFAULT_CACHE."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            with open(os.path.join(base, index, "level")) as lv, open(os.path.join(base, index, "type")) as kind:
                if lv.read().strip() == str(level) and kind.read().strip() in ("Data", "Unified"):
                    with open(os.path.join(base, index, "size")) as size:
                        text = size.read().strip().upper()
                    return int(text.rstrip("KM")) * {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
    except (OSError, ValueError):
        pass
    return _DEFAULT_CACHE[level]


@lru_cache(maxsize=None)
def _gemm_blocks(kernel):
    """(kc, nc) of the micro-kernels: the packed MR x kc panel of A takes half of the L1 data
    cache (B's panels stream through the other half), kc within 16 .. the kernels' maximum; a
    kc x nc block of B takes half of L2, nc a multiple of NR."""
    mr, nr = _kernel.gemm_tile(kernel)
    kc = max(16, min(_kernel.KC_MAX, _cache_size(1) // (2 * mr * 4)))
    nc = max(nr, _cache_size(2) // (2 * kc * 4) // nr * nr)
    return kc, nc


def _selected_kernel():
    """The kernel named by the environment variable CNNX_ISA (blas, generic, avx2, avx512), or
    None when it is unset, empty or 'auto' (then plan_conv picks the fastest for each call)."""
    name = os.environ.get("CNNX_ISA", "").strip().lower()
    if name in ("", "auto"):
        return None
    if name not in KERNELS:
        raise ValueError(f"CNNX_ISA must be one of auto, {', '.join(KERNELS)}; got {name!r}")
    if name != "blas" and name not in SUPPORTED_KERNELS:
        raise ValueError(f"CNNX_ISA={name}: this CPU cannot run it (it runs {', '.join(SUPPORTED_KERNELS)})")
    return name


SUPPORTED_KERNELS = ("blas", *_kernel.supported_isas())
# CNNX_ISA's kernel, which plan_conv then uses for every float32 algorithm with an own GEMM; else
# None, and plan_conv uses the widest own kernel of this CPU where it beats BLAS.
FORCED_KERNEL = _selected_kernel()
_FASTEST_OWN = next((k for k in reversed(SUPPORTED_KERNELS) if k in _FASTER_THAN_BLAS), None)

# 1x1 outputs (fully connected): images are split into column blocks of at least this many images,
# and filter-gradient rows into blocks of at least this many rows, at most _MAX_PARTS of each.
_FC_COLS = 16
_FC_ROWS = 64
_MAX_PARTS = 8


def _block_cols(rows, cols, width, dtype):
    """Columns of a rows x cols grid per block so that a block's (pixels x width) matrix takes at
    most _BLOCK_BYTES (at least one column)."""
    per_col = rows * width * np.dtype(dtype).itemsize
    return int(max(1, min(cols, _BLOCK_BYTES // per_col)))


def _parts(total, least, most):
    """How many blocks to cut ``total`` items into: blocks of >= ``least``, at most ``most``, even."""
    n = min(most, -(-total // least))
    if n > 1 and n % 2:
        n += 1
    return max(1, min(n, total))


def vl_nnconv(x, f, b, *args, **kwargs):
    """Convolution (correlation) of images with a filter bank, plus biases.

    Call forms::

        y = vl_nnconv(x, f, b, **options)
        dzdx, dzdf, dzdb = vl_nnconv(x, f, b, dzdy, **options)

    MatConvNet's name/value form works too: ``vl_nnconv(x, f, b, 'Pad', [0, 1, 0, 1], 'Stride', 2)``,
    and the derivative may be given as the keyword ``dzdy=``. Filters are not flipped::

        y[i,j,k,n] = b[k] + sum_{u,v,c} f[u,v,c,k] * xpad[i*SY + u*DY - PT, j*SX + v*DX - PL, g*FC + c, n]

    where xpad is x padded with zeros and g = k // (K/G) is the group of filter k. The output size is
    YH = floor((H + PT + PB - (FH-1)*DY - 1) / SY) + 1, and likewise YW.

    Parameters
    ----------
    x : ndarray, (H, W, C, N)
        Images, float32 or float64. A 2-D or 3-D array is one image (N = 1); results derived from it
        are then 3-D. H, W and C must be at least 1; N = 0 images give empty results (and zero
        filter and bias derivatives).
    f : ndarray, (FH, FW, FC, K), or None
        Filter bank, each dimension at least 1. FC must divide C: the G = C / FC groups of FC
        channels each get K / G filters (K must be a multiple of G). None or MATLAB's empty ``[]``
        (also a 0 or 0 x 0 array) is the identity bank: the block then only pads, subsamples and
        adds biases, and needs C biases. Any other array with a zero dimension is an error.
    b : ndarray with K elements (any shape), or None
        Biases; None or ``[]`` (a 0 or 0 x 0 array) for none.
    dzdy : ndarray, (YH, YW, K, N), optional
        Derivative of the objective with respect to the output. Given, the call runs backward.
    Pad : 0
        Zero padding, a scalar or [TOP, BOTTOM, LEFT, RIGHT], each >= 0.
    Stride : 1
        Subsampling step, a scalar or [SY, SX], each >= 1.
    Dilate : 1
        Filter dilation, a scalar or [DY, DX], each >= 1; must be 1 without filters.
        Pad, Stride and Dilate hold whole numbers below 2^62, and H + PT + PB and W + PL + PR
        must stay below 2^62 too.
    NoDerData : false
        Flag: backward skips the derivative of x and returns None for it.
    NoDerFilters : false
        Flag: backward skips the derivative of f and returns None for it.
    NoDerBiases : false
        Flag: backward skips the derivative of b and returns None for it. Flags take true,
        false, 1 or 0.

    Returns
    -------
    y : ndarray, (YH, YW, K, N)
        Forward: the output, Fortran-ordered, of x's dtype.
    dzdx, dzdf, dzdb : ndarray or None
        Backward: the derivatives, shaped like x, f and b (b keeps the caller's shape). dzdf is None
        without filters, dzdb None without biases, and each is None when its NoDer flag is set.

    Raises
    ------
    TypeError
        Arrays that are not float32/float64, arrays of different dtypes, an unknown option.
    ValueError
        Wrong number of dimensions, x with zero height, width or channels, f with a zero
        dimension, channels of x and f that do not fit (C not a multiple of FC, K not a multiple
        of G), a negative pad, a stride or dilation below 1, option values that are not whole
        numbers below 2^62 (NaN, inf, 1.5, 2**63), filters larger than the padded input, a bias
        or dzdy of the wrong size, or sizes too large to index (or, for BLAS, above 2^31 - 1).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnconv
    >>> x = np.ones((5, 5, 3, 2), np.float32, order="F")
    >>> f = np.ones((3, 3, 3, 4), np.float32, order="F")
    >>> y = vl_nnconv(x, f, None, 'Pad', 1, 'Stride', 2)
    >>> y.shape, float(y[1, 1, 0, 0]), float(y[0, 0, 0, 0])
    ((3, 3, 4, 2), 27.0, 12.0)
    >>> dzdx, dzdf, dzdb = vl_nnconv(x, f, None, np.ones_like(y), pad=1, stride=2)
    >>> dzdx.shape, dzdf.shape, dzdb is None
    ((5, 5, 3, 2), (3, 3, 3, 4), True)
    """
    problem = validate_conv(x, f, b, *args, **kwargs)
    data_plan = _data_derivative_plan(problem)
    if data_plan is None:
        return run_conv(problem, plan_conv(problem.geometry, problem.dtype, problem.backward,
                                           data_only=problem.need_dx and not problem.need_df))
    dzdx = run_conv(replace(problem, need_df=False, need_db=False), data_plan)[0]
    if not (problem.need_df or problem.need_db):
        return dzdx, None, None
    _, dzdf, dzdb = run_conv(replace(problem, need_dx=False), plan_conv(problem.geometry, problem.dtype, True))
    return dzdx, dzdf, dzdb


# These backward algorithms take the data derivative as a correlation of dY, padded, with the
# flipped filters: they multiply the padding's zeros by the filters, where MatConvNet's row2im
# (im2row_gemm) has no products, so an infinite or NaN weight would give NaN for its number.
_CORRELATING_BACKWARD = ("shifted_stride1", "implicit_backward")


def _data_derivative_plan(problem):
    """The plan of a backward call's data derivative when it runs as a call of its own, else None:
    im2row_gemm when the filters are not all finite and the call's plan would correlate; the
    data-only (BLAS) plan when the filter derivative's plan takes an own kernel but the data
    derivative alone would run on BLAS (few channels per group): in one implicit_backward call the
    data GEMM would run its FC rows in tiles of 32 (lenet conv1, FC = 3, Intel Xeon with AVX-512:
    61 ms for both derivatives at once against 8 + 16 ms apart)."""
    if not (problem.backward and problem.need_dx):
        return None
    geom, dtype = problem.geometry, problem.dtype
    alone = plan_conv(geom, dtype, True, data_only=True)
    if alone.algorithm in _CORRELATING_BACKWARD and not np.isfinite(problem.f4).all():
        return _im2row_backward_plan(geom, dtype, alone.threads)
    both = problem.need_df or problem.need_db
    if both and alone.kernel == "blas" and plan_conv(geom, dtype, True).kernel != "blas":
        return alone
    return None


@dataclass(frozen=True)
class ConvGeometry:
    """The sizes and options of one convolution: X is H x W x C x N, F is FH x FW x FC x K
    (FH = FW = 1, FC = K = C for the identity bank), Y is YH x YW x K x N."""
    H: int
    W: int
    C: int
    N: int
    FH: int
    FW: int
    FC: int
    K: int
    YH: int
    YW: int
    sy: int = 1
    sx: int = 1
    pt: int = 0
    pb: int = 0
    pl: int = 0
    pr: int = 0
    dil_y: int = 1
    dil_x: int = 1
    identity: bool = False

    @property
    def P(self):
        """Output pixels per image."""
        return self.YH * self.YW

    @property
    def Q(self):
        """Filter taps per filter."""
        return self.FH * self.FW * self.FC

    @property
    def groups(self):
        return self.C // self.FC

    @property
    def sizes(self):
        """The geometry tuple of the kernels."""
        return (self.H, self.W, self.C, self.N, self.FH, self.FW, self.FC, self.K, self.YH, self.YW,
                self.sy, self.sx, self.pt, self.pl, self.dil_y, self.dil_x)

    @property
    def fully_connected(self):
        """A 1x1 output (and real filters)."""
        return self.P == 1 and not self.identity

    @property
    def covers_x(self):
        """The filters cover X exactly: no padding, no dilation (X is then its own im2row)."""
        return ((self.FH, self.FW, self.dil_y, self.dil_x, self.pt, self.pb, self.pl, self.pr)
                == (self.H, self.W, 1, 1, 0, 0, 0, 0))

    @property
    def one_by_one(self):
        """1x1 filters, stride 1, no padding: X_n is already the im2row matrix."""
        return (not self.identity
                and (self.FH, self.FW, self.sy, self.sx, self.pt, self.pb, self.pl, self.pr)
                == (1, 1, 1, 1, 0, 0, 0, 0))


# The algorithms, each with the directions it serves and the geometries it applies to.
#   identity                  F empty: Y is im2row itself (padding, stride), plus biases
#   direct_1x1                1x1 filters, stride 1, no padding: Y_n = X_n @ F, no copy
#   fully_connected           1x1 output: a few GEMMs over all images (im2row into a Q x N matrix)
#   fully_connected_direct    1x1 output and F covering X exactly: X itself is the Q x N matrix
#   im2row_gemm               Y = Xrow @ F, ``batch`` images per GEMM (each tap contiguous);
#                             backward dF^T += dYt @ Xrow, dXrow = dYt^T @ F^T, scattered back
#   im2col_gemm (forward)     Y^T = F^T @ Xcol (each patch contiguous), ``block_cols`` output
#                             columns per GEMM (all YW when batch > 1)
#   im2col_shifted (forward)  stride 1 across: Xcol of one column of taps, FW shifted GEMMs
#   shifted_stride1 (backward) stride 1: matrices one column of taps wide, the data gradient as
#                             a correlation of dY with the flipped filters
#   implicit_gemm (forward)   no dilation down: Y^T = F^T @ Xcol on cnnx's own kernels, which
#                             read Xcol in place from the padded, channels-first image
#   implicit_columns          stride 1 down: Y = Xcol @ F on cnnx's own kernels with MR output
#   (forward)                 rows of an image column as the tile's vectors, read in place from
#                             the padded image in its own layout, Y written in place
#   implicit_backward         stride 1, no dilation down: both derivatives so, reading the padded
#                             image and the padded dY in place
# A later algorithm is one more entry here, a branch in plan_conv and one in run_conv. Which GEMM
# runs inside an algorithm (BLAS or one of cnnx's micro-kernels) is the plan's ``kernel``.
ALGORITHMS = {
    "identity": (("forward", "backward"), lambda g: g.identity),
    "direct_1x1": (("forward", "backward"), lambda g: g.one_by_one),
    "fully_connected": (("forward", "backward"), lambda g: g.fully_connected),
    "fully_connected_direct": (("forward", "backward"), lambda g: g.fully_connected and g.covers_x),
    "im2row_gemm": (("forward", "backward"), lambda g: not g.identity),
    "im2col_gemm": (("forward",), lambda g: not g.identity),
    "im2col_shifted": (("forward",), lambda g: not g.identity and g.sx == 1),
    "shifted_stride1": (("backward",), lambda g: not g.identity and (g.sy, g.sx) == (1, 1)),
    "implicit_gemm": (("forward",), lambda g: not g.identity and not g.fully_connected and g.dil_y == 1),
    "implicit_columns": (("forward",), lambda g: not g.identity and not g.fully_connected and g.sy == 1),
    "implicit_backward": (("backward",), lambda g: (not g.identity and not g.fully_connected and g.dil_y == 1
                                                    and (g.sy, g.sx) == (1, 1))),
}


@dataclass(frozen=True)
class ConvPlan:
    """How one vl_nnconv call runs: the algorithm (a key of ``ALGORITHMS``) and its blocking.

    Attributes
    ----------
    algorithm : str
        See ``ALGORITHMS``.
    backward : bool
        Whether the plan computes derivatives (else the forward output).
    threads : int
        OpenMP threads of the kernel (results are the same at any count).
    batch : int
        Images stacked into one GEMM (im2row_gemm, im2col_gemm); 1 for the others.
    block_cols : int
        Output columns per expanded block (im2col_gemm: YW when batch > 1; im2col_shifted);
        image columns per block for shifted_stride1. 0 where unused.
    chunks : int
        Backward (im2row_gemm, direct_1x1, identity, shifted_stride1): the filter and bias
        gradients are reduced over this many contiguous chunks of images (batches), each with its
        own partial sums, added in chunk order.
    col_parts, row_parts : int
        Fully connected: images cut into ``col_parts`` column blocks, filter-gradient rows into
        ``row_parts`` row blocks.
    kernel : str
        The GEMM (one of ``KERNELS``): "blas", or one of cnnx's float32 micro-kernels ("generic",
        "avx2", "avx512"), which the algorithms with expanded-matrix GEMMs can run
        (direct_1x1, im2row_gemm, im2col_gemm, im2col_shifted, shifted_stride1) and the
        implicit ones (implicit_gemm, implicit_columns, implicit_backward) need.
    kc, nc : int
        The micro-kernels' inner-dimension block (from the L1 cache size) and columns of B per
        block (from the L2 size); 0 for BLAS.
    """
    algorithm: str
    backward: bool = False
    threads: int = 1
    batch: int = 1
    block_cols: int = 0
    chunks: int = 1
    col_parts: int = 1
    row_parts: int = 1
    kernel: str = "blas"
    kc: int = 0
    nc: int = 0

    def check(self, geom):
        """Raise ValueError unless this plan can run ``geom``."""
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"{_FNAME}: unknown algorithm {self.algorithm!r}; one of {sorted(ALGORITHMS)}")
        directions, applies = ALGORITHMS[self.algorithm]
        if ("backward" if self.backward else "forward") not in directions or not applies(geom):
            raise ValueError(f"{_FNAME}: algorithm {self.algorithm!r} "
                             f"({'backward' if self.backward else 'forward'}) does not apply to {geom}")
        batches = -(-geom.N // self.batch) if self.batch >= 1 else 0
        ok = (self.threads >= 1 and self.batch >= 1 and self.chunks >= 1 and self.col_parts >= 1
              and self.row_parts >= 1)
        if self.algorithm in ("identity", "direct_1x1", "im2col_shifted", "shifted_stride1"):
            ok = ok and self.batch == 1
        if self.algorithm == "im2col_gemm" and not self.backward:
            ok = ok and 1 <= self.block_cols <= geom.YW and (self.batch == 1 or self.block_cols == geom.YW)
        if self.algorithm == "im2col_shifted":
            ok = ok and 1 <= self.block_cols <= geom.YW
        if self.algorithm == "shifted_stride1":
            ok = ok and 1 <= self.block_cols <= max(geom.W, geom.YW)
        if self.backward and self.algorithm in ("identity", "direct_1x1", "im2row_gemm", "shifted_stride1",
                                                "implicit_backward"):
            ok = ok and self.chunks <= max(1, batches)
        if self.algorithm in _OWN_ONLY:
            ok = ok and self.kernel != "blas" and self.batch == 1
        if self.kernel != "blas":
            ok = ok and self.algorithm in _OWN_GEMM and 1 <= self.kc <= _kernel.KC_MAX and self.nc >= 1
            if self.kernel not in SUPPORTED_KERNELS:
                raise ValueError(f"{_FNAME}: kernel {self.kernel!r} is not one of this CPU's "
                                 f"{', '.join(SUPPORTED_KERNELS)}")
        if not ok:
            raise ValueError(f"{_FNAME}: plan {self} does not fit {geom}")


def _gemm_batch(geom):
    """Images stacked into one im2row/im2col GEMM: until it has _GEMM_ROWS rows (output pixels);
    all images for a 1x1 output, one for the identity bank and 1x1 stride-1 unpadded filters."""
    if geom.fully_connected:
        return geom.N
    if geom.identity or geom.one_by_one:
        return 1
    return max(1, min(geom.N, -(-_GEMM_ROWS // geom.P)))


def _chunks(n_batches, geom, dtype):
    """Chunks of the filter/bias gradient reduction: at most _MAX_CHUNKS, partials within _PARTIAL_BYTES."""
    return max(1, min(n_batches, _MAX_CHUNKS, _PARTIAL_BYTES // (geom.Q * geom.K * np.dtype(dtype).itemsize)))


def _work(geom, backward):
    """Floating-point operations of a call, for the thread policy (a copy counts one per element)."""
    if geom.identity:
        flops = geom.P * geom.K * geom.N
    else:
        flops = 2 * geom.P * geom.Q * geom.K * geom.N
    return 2 * flops if backward else flops


def plan_conv(geom, dtype, backward=False, threads=None, kernel=None, data_only=False):
    """Choose the algorithm and blocking for ``geom`` (a ConvGeometry) in ``dtype``: from the sizes
    only, so that results do not depend on the thread count.

    ``threads`` None applies the thread policy (``threads_for_work`` over the call's floating-point
    operations); an int forces that many threads. ``kernel`` None chooses the GEMM: in float32,
    CNNX_ISA's kernel (FORCED_KERNEL) or else the widest own kernel of this CPU where it beats
    BLAS; BLAS otherwise and for float64. A name forces that kernel wherever the algorithm has an
    own GEMM. ``data_only``: a backward call for the data derivative alone (it picks the kernel).
    """
    plan = _plan_algorithm(geom, dtype, backward,
                           threads_for_work(_work(geom, backward), CONV_FLOPS_PER_THREAD) if threads is None
                           else threads)
    if kernel is None:
        if np.dtype(dtype) != np.float32:
            kernel = "blas"
        elif FORCED_KERNEL:
            kernel = FORCED_KERNEL
        elif data_only and geom.FC < _OWN_DATA_MIN_CHANNELS:
            kernel = "blas"
        else:
            kernel = _FASTEST_OWN if plan.algorithm in _FASTER_THAN_BLAS.get(_FASTEST_OWN, ()) else "blas"
    if kernel == "blas" or plan.algorithm not in _OWN_GEMM:
        return plan
    kc, nc = _gemm_blocks(kernel)
    if plan.algorithm in _IMPLICIT_REPLACES and ALGORITHMS["implicit_gemm"][1](geom):
        if ALGORITHMS["implicit_columns"][1](geom) and geom.YH % _kernel.gemm_tile(kernel)[0] == 0:
            return ConvPlan("implicit_columns", False, plan.threads, kernel=kernel, kc=kc, nc=nc)
        return ConvPlan("implicit_gemm", False, plan.threads, kernel=kernel, kc=kc, nc=nc)
    if plan.algorithm in _IMPLICIT_BACKWARD_REPLACES and ALGORITHMS["implicit_backward"][1](geom):
        return ConvPlan("implicit_backward", True, plan.threads, chunks=plan.chunks, kernel=kernel, kc=kc, nc=nc)
    return replace(plan, kernel=kernel, kc=kc, nc=nc)


def _plan_algorithm(geom, dtype, backward, threads):
    """The algorithm and blocking of plan_conv, with BLAS as the GEMM."""
    FH, FC, P, Q = geom.FH, geom.FC, geom.P, geom.Q
    batch = _gemm_batch(geom)
    if geom.fully_connected:
        name = "fully_connected_direct" if geom.covers_x else "fully_connected"
        return ConvPlan(name, backward, threads, batch=1, col_parts=_parts(geom.N, _FC_COLS, _MAX_PARTS),
                        row_parts=_parts(Q, _FC_ROWS, _MAX_PARTS) if backward else 1)
    if geom.identity or geom.one_by_one:
        name = "identity" if geom.identity else "direct_1x1"
        chunks = _chunks(geom.N, geom, dtype) if backward else 1
        return ConvPlan(name, backward, threads, chunks=chunks)
    long_runs = FH * FC >= _PATCH_RUN
    if backward:
        if (geom.sy, geom.sx) == (1, 1) and long_runs:
            Kg = geom.K // geom.groups
            return ConvPlan("shifted_stride1", True, threads, chunks=_chunks(geom.N, geom, dtype),
                            block_cols=_block_cols(max(geom.H, geom.YH), max(geom.W, geom.YW),
                                                   FH * max(FC, Kg), dtype))
        return _im2row_backward_plan(geom, dtype, threads)
    if (geom.sy, geom.sx) != (1, 1) or long_runs:
        if geom.sx == 1 and geom.FW > 1 and P >= _SHIFT_PIXELS:
            return ConvPlan("im2col_shifted", False, threads,
                            block_cols=_block_cols(geom.YH, geom.YW, FH * FC, dtype))
        return ConvPlan("im2col_gemm", False, threads, batch=batch,
                        block_cols=geom.YW if batch > 1 else _block_cols(geom.YH, geom.YW, Q, dtype))
    return ConvPlan("im2row_gemm", False, threads, batch=batch)


def _im2row_backward_plan(geom, dtype, threads):
    """MatConvNet's own backward pass: im2row for the filter derivative, row2im for the data one."""
    batch = _gemm_batch(geom)
    return ConvPlan("im2row_gemm", True, threads, batch=batch, chunks=_chunks(-(-geom.N // batch), geom, dtype))


@dataclass
class ConvProblem:
    """A validated vl_nnconv call: Fortran-ordered 4-D arrays and what to compute."""
    geometry: ConvGeometry
    dtype: np.dtype
    x4: np.ndarray
    f4: np.ndarray          # a 1-element placeholder for the identity bank
    b1: np.ndarray          # biases as a vector (a 1-element placeholder without biases)
    has_bias: bool
    dy4: np.ndarray = None  # None: forward
    need_dx: bool = False
    need_df: bool = False
    need_db: bool = False
    x_shape: tuple = ()
    f_shape: tuple = ()
    b_shape: tuple = ()

    @property
    def backward(self):
        return self.dy4 is not None


def validate_conv(x, f, b, *args, **kwargs):
    """Check the arguments of ``vl_nnconv(x, f, b, *args, **kwargs)``; return a ConvProblem."""
    dzdy, rest, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, rest, kwargs, _OPTIONS)
    pt, pb, pl, pr = opts["pad"]
    sy, sx = opts["stride"]
    dil_y, dil_x = opts["dilate"]

    x = as_float_array(x, "X", _FNAME)
    f = None if is_placeholder(f) else as_float_array(f, "F", _FNAME)
    b = None if is_placeholder(b) else as_float_array(b, "B", _FNAME)
    b_shape = None if b is None else b.shape
    dzdy = as_float_array(dzdy, "DZDY", _FNAME, allow_none=True)
    dtype = common_dtype(_FNAME, X=x, F=f, B=b, DZDY=dzdy)

    H, W, C, N = shape4(x, "X", _FNAME)
    if min(H, W, C) == 0:
        raise ValueError(
            f"{_FNAME}: X has shape {x.shape}; H, W and C must be at least 1 (only N may be 0)")
    identity = f is None
    if identity:
        if (dil_y, dil_x) != (1, 1):
            raise ValueError(f"{_FNAME}: Dilate must be 1 when F is empty (the identity filter bank)")
        FH, FW, FC, K = 1, 1, C, C
    else:
        FH, FW, FC, K = shape4(f, "F", _FNAME)
        if min(FH, FW, FC, K) == 0:
            raise ValueError(
                f"{_FNAME}: F has shape {f.shape}; FH, FW, FC and K must be at least 1 "
                "(None or [] is the identity filter bank)")
        if C % FC:
            raise ValueError(
                f"{_FNAME}: F has {FC} channels but X has {C} (C must be a multiple of FC)")
        groups = C // FC
        if K % groups:
            raise ValueError(
                f"{_FNAME}: F has {K} filters, not a multiple of the {groups} groups (C / FC)")
    if b is not None and b.size != K:
        if identity:
            raise ValueError(f"{_FNAME}: B has {b.size} elements but the identity filter bank "
                             f"(F empty) has C = {K} filters")
        raise ValueError(
            f"{_FNAME}: B has {b.size} elements but there are {K} filters (None or [] for no biases)")

    if H + pt + pb >= INT_OPTION_LIMIT or W + pl + pr >= INT_OPTION_LIMIT:
        raise ValueError(
            f"{_FNAME}: X with padding is {H + pt + pb} x {W + pl + pr}; each must be less than 2^62")
    ext_y = (FH - 1) * dil_y + 1
    ext_x = (FW - 1) * dil_x + 1
    if H + pt + pb < ext_y or W + pl + pr < ext_x:
        raise ValueError(
            f"{_FNAME}: F ({ext_y} x {ext_x} with dilation) is larger than X "
            f"({H + pt + pb} x {W + pl + pr} including padding)")
    YH, YW = window_output_size(H, W, (FH, FW), (pt, pb, pl, pr), (sy, sx), (dil_y, dil_x))
    y_shape = (YH, YW, K, N)
    check_elements(_FNAME, "Y", *y_shape)
    geom = ConvGeometry(H, W, C, N, FH, FW, FC, K, YH, YW, sy, sx, pt, pb, pl, pr, dil_y, dil_x, identity)
    check_buffers(geom, _FNAME)

    if dzdy is not None and shape4(dzdy, "DZDY", _FNAME) != y_shape:
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but Y has shape {y_shape}")

    x4 = fortran4(x, (H, W, C, N))
    f4 = np.zeros(1, dtype) if identity else fortran4(f, (FH, FW, FC, K))
    b1 = np.zeros(1, dtype) if b is None else np.ascontiguousarray(b.reshape(-1, order="F"))
    problem = ConvProblem(geom, np.dtype(dtype), x4, f4, b1, b is not None, x_shape=x.shape,
                          f_shape=None if identity else f.shape, b_shape=b_shape)
    if dzdy is not None:
        problem.dy4 = fortran4(dzdy, y_shape)
        problem.need_dx = not opts["no_der_data"]
        problem.need_df = not opts["no_der_filters"] and not identity
        problem.need_db = not opts["no_der_biases"] and b is not None
    return problem


def check_buffers(geom, fname):
    """Raise ValueError (naming ``fname``) if the kernels' buffers for ``geom`` could not be
    indexed or handed to BLAS; vl_nnconvt checks its adjoint convolution with it too."""
    H, W, C, FH, FW, FC, K, YH, YW = geom.H, geom.W, geom.C, geom.FH, geom.FW, geom.FC, geom.K, geom.YH, geom.YW
    batch = _gemm_batch(geom)
    check_elements(fname, "the im2row buffer", batch, geom.P, geom.Q, C // FC)
    check_blas_dims(fname, "the im2row matrix", batch * geom.P, geom.Q, K, geom.N, H * W * C)
    # One column of taps over all the columns it reaches (forward and stride-1 backward).
    reach = max(W, YW) + (FW - 1) * geom.dil_x
    check_elements(fname, "the expanded X", max(H, YH), reach, FH, max(FC, K))
    check_blas_dims(fname, "the expanded X", max(H, YH) * reach, FH * max(FC, K))
    # The implicit GEMM's padded image (the rows and columns the filters reach).
    check_elements(fname, "the padded X", (YH - 1) * geom.sy + (FH - 1) * geom.dil_y + 1,
                   (YW - 1) * geom.sx + (FW - 1) * geom.dil_x + 1, FC)
    # implicit_columns' padded image: its rows rounded up to whole tiles (of at most 32 rows).
    check_elements(fname, "the padded X", -(-YH // 32) * 32 + (FH - 1) * geom.dil_y,
                   (YW - 1) * geom.sx + (FW - 1) * geom.dil_x + 1, FC)


def run_conv(problem, plan):
    """Run ``plan`` (a ConvPlan that fits the problem's geometry) on a ConvProblem: the output y
    (forward) or (dzdx, dzdf, dzdb) (backward), shaped as vl_nnconv returns them."""
    g, dtype = problem.geometry, problem.dtype
    if plan.backward != problem.backward:
        raise ValueError(f"{_FNAME}: a {'backward' if plan.backward else 'forward'} plan for a "
                         f"{'backward' if problem.backward else 'forward'} call")
    plan.check(g)
    H, W, C, N, FH, FW, FC, K, YH, YW = g.H, g.W, g.C, g.N, g.FH, g.FW, g.FC, g.K, g.YH, g.YW
    P, Q, G = g.P, g.Q, g.groups
    sizes = g.sizes
    x4, f4, b1 = problem.x4, problem.f4, problem.b1
    has_bias = problem.has_bias
    xv = x4.reshape(-1, order="F")
    fv = f4.reshape(-1, order="F")
    empty = N * K * P == 0
    algorithm, n_threads = plan.algorithm, plan.threads
    y_shape = (YH, YW, K, N)
    if plan.kernel != "blas" and dtype != np.float32:
        raise ValueError(f"{_FNAME}: kernel {plan.kernel!r} runs float32 only, not {dtype}")
    isa = -1 if plan.kernel == "blas" else _kernel.ISA_CODES[plan.kernel]

    if not problem.backward:
        y = np.empty(y_shape, dtype, order="F")
        if empty:
            y[...] = 0 if not has_bias else b1.reshape(1, 1, K, 1)
        elif algorithm == "implicit_gemm":
            fwv = np.asfortranarray(f4.transpose(3, 2, 0, 1)).reshape(-1, order="F")
            _kernel.conv_forward_implicit(xv, fwv, b1, y.reshape(-1, order="F"), sizes, has_bias,
                                          bool(np.isfinite(fwv).all()), isa, plan.kc, plan.nc, n_threads)
        elif algorithm == "implicit_columns":
            _kernel.conv_forward_columns(xv, fv, b1, y.reshape(-1, order="F"), sizes, has_bias,
                                         bool(np.isfinite(fv).all()), isa, n_threads)
        elif algorithm in ("fully_connected", "fully_connected_direct"):
            direct_fc = algorithm == "fully_connected_direct"
            xcol = np.empty(1 if direct_fc else Q * N * G, dtype)
            with blas_single_threaded():
                _kernel.fc_forward(xv, fv, b1, y.reshape(-1, order="F"), xcol, sizes, has_bias,
                                   direct_fc, plan.col_parts, n_threads)
        else:
            patch_major = algorithm in ("im2col_gemm", "im2col_shifted")
            if patch_major:  # F^T, its taps ordered channels first as im2col lays out patches
                fwv = np.asfortranarray(f4.transpose(3, 2, 0, 1)).reshape(-1, order="F")
            else:
                fwv = fv
            block_cols = plan.block_cols if patch_major else YW
            with blas_single_threaded():
                _kernel.conv_forward(xv, fwv, b1, y.reshape(-1, order="F"), sizes, g.identity,
                                     has_bias, algorithm == "direct_1x1", patch_major,
                                     algorithm == "im2col_shifted", plan.batch, block_cols, isa, plan.kc,
                                     plan.nc, n_threads)
        return y.reshape(out_shape(y_shape, len(problem.x_shape)), order="F")

    need_dx, need_df, need_db = problem.need_dx, problem.need_df, problem.need_db
    dy4 = problem.dy4
    dx = np.empty((H, W, C, N), dtype, order="F") if need_dx else np.zeros(1, dtype)
    df = db = None
    if empty:
        dx[...] = 0
        df = np.zeros(Q * K, dtype)
        db = dy4.sum(axis=(0, 1, 3))
    elif algorithm in ("fully_connected", "fully_connected_direct"):
        direct_fc = algorithm == "fully_connected_direct"
        df = np.empty(Q * K, dtype)
        db = np.empty(K, dtype)
        scratch = 1 if direct_fc else Q * N * G
        xcol = np.empty(scratch if need_df else 1, dtype)
        dxcol = np.empty(scratch if need_dx else 1, dtype)
        with blas_single_threaded():
            _kernel.fc_backward(xv, fv, dy4.reshape(-1, order="F"), dx.reshape(-1, order="F"), df,
                                db, xcol, dxcol, sizes, direct_fc, need_dx, need_df, need_db,
                                plan.col_parts, plan.row_parts, n_threads)
    elif algorithm == "implicit_backward":
        n_chunks = plan.chunks
        dft_parts = np.empty(n_chunks * Q * K if need_df else 1, dtype)
        db_parts = np.empty(n_chunks * K if need_db else 1, dtype)
        Kg = K // G
        fkg = f4[::-1, ::-1].reshape((FH, FW, FC, Kg, G), order="F").transpose(2, 3, 0, 1, 4)
        fkg = np.asfortranarray(fkg).reshape(-1, order="F")
        dyv = dy4.reshape(-1, order="F")
        # The filter gradient skips products with padding zeros only where they are zeros (dY
        # finite), as MatConvNet's im2row computes them; its data gradient (row2im) has none.
        _kernel.conv_backward_implicit(xv, fkg, dyv, dx.reshape(-1, order="F"), dft_parts, db_parts, sizes, need_dx,
                                       need_df, need_db, need_dx,
                                       need_df and FH * FC >= _SKIP_MIN_TAPS and bool(np.isfinite(dyv).all()),
                                       n_chunks, isa, plan.kc, plan.nc, n_threads)
        # Chunk partials summed in chunk order; each is dF^T as a K x FC x FH x FW array.
        if need_df:
            dft = dft_parts.reshape(n_chunks, -1).sum(axis=0).reshape((K, FC, FH, FW), order="F")
            df = np.asfortranarray(dft.transpose(2, 3, 1, 0)).ravel(order="F")
        db = db_parts.reshape(n_chunks, K).sum(axis=0) if need_db else None
    elif algorithm == "shifted_stride1":
        # Stride 1: GEMMs one column of taps wide, the data gradient as a correlation of dY with
        # the flipped filters (see conv_backward_shifted).
        n_chunks = plan.chunks
        dft_parts = np.empty(n_chunks * Q * K if need_df else 1, dtype)
        db_parts = np.empty(n_chunks * K if need_db else 1, dtype)
        Kg = K // G
        # The filters flipped in both directions, as an FC x Kg x FH x FW x G array.
        fkg = f4[::-1, ::-1].reshape((FH, FW, FC, Kg, G), order="F").transpose(2, 3, 0, 1, 4)
        fkg = np.asfortranarray(fkg).reshape(-1, order="F")
        with blas_single_threaded():
            _kernel.conv_backward_shifted(xv, fkg, dy4.reshape(-1, order="F"),
                                          dx.reshape(-1, order="F"), dft_parts, db_parts, sizes,
                                          need_dx, need_df, need_db, plan.block_cols, n_chunks, isa,
                                          plan.kc, plan.nc, n_threads)
        # Chunk partials summed in chunk order: the same at any thread count.
        if need_df:
            dft = dft_parts.reshape(n_chunks, -1).sum(axis=0).reshape((K, FH, FC, FW), order="F")
            df = np.asfortranarray(dft.transpose(1, 3, 2, 0)).ravel(order="F")
        db = db_parts.reshape(n_chunks, K).sum(axis=0) if need_db else None
    else:  # im2row_gemm, direct_1x1, identity
        n_chunks = plan.chunks
        dft_parts = np.empty(n_chunks * Q * K if need_df else 1, dtype)
        db_parts = np.empty(n_chunks * K if need_db else 1, dtype)
        ft = np.zeros(1, dtype) if g.identity else np.asfortranarray(f4.reshape(Q, K, order="F").T)
        with blas_single_threaded():
            _kernel.conv_backward(xv, ft.reshape(-1, order="F"), dy4.reshape(-1, order="F"),
                                  dx.reshape(-1, order="F"), dft_parts, db_parts, sizes, g.identity,
                                  algorithm == "direct_1x1", need_dx, need_df, need_db, plan.batch,
                                  n_chunks, isa, plan.kc, plan.nc, n_threads)
        # Chunk partials summed in chunk order: the same at any thread count. Each partial is
        # dF^T (K x Q, column-major), that is a C-ordered (Q, K) array.
        df = dft_parts.reshape(n_chunks, Q, K).sum(axis=0).ravel(order="F") if need_df else None
        db = db_parts.reshape(n_chunks, K).sum(axis=0) if need_db else None

    dzdx = dx.reshape(problem.x_shape, order="F") if need_dx else None
    dzdf = np.asfortranarray(df.reshape(problem.f_shape, order="F")) if need_df else None
    dzdb = (np.asfortranarray(db.astype(dtype, copy=False).reshape(problem.b_shape, order="F"))
            if need_db else None)
    return dzdx, dzdf, dzdb
