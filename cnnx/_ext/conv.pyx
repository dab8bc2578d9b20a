"""Convolution kernels for vl_nnconv: im2row + GEMM, OpenMP over images, one fused float type.

Layout (MatConvNet's): X is H x W x C x N and F is FH x FW x FC x K, both Fortran-ordered. For one
image and one group, im2row builds the P x Q column-major matrix Xrow (P = YH*YW output pixels,
Q = FH*FW*FC filter taps), so that F read as a Q x K matrix gives Y_n = Xrow @ F (P x K) directly.
Several images may share one GEMM ("batch"): their Xrow blocks are stacked along P.

The faster paths for wider layers (chosen by cnnx/conv.py from the sizes only): im2col, each
patch contiguous, copied from the image transposed to channels first, for Y^T = F^T @ Xcol; and at
stride 1, matrices one column of taps (FH*FC) wide over every image column the taps reach, which
serve every tap column v shifted by v*DX columns, so FW GEMMs accumulate over a matrix FW times
smaller than im2col's (forward, filter gradient, and the data gradient as a correlation of dY
with the flipped filters). Large images are expanded a block of columns at a time.

The GEMMs over the expanded matrices (every forward algorithm but the identity and fully
connected ones, and the stride-1 backward) run in float32 either in BLAS or in cnnx's own
register-blocked micro-kernels (gemm.h), one per instruction set: the caller passes ``isa``
(-1 for BLAS, else a CNNX_ISA_* code the CPU supports), ``kc``, the inner-dimension block, and
``nc``, the columns of B per cache block.
float64 always runs in BLAS.

Every function takes the geometry as a tuple checked by cnnx/conv.py:
(H, W, C, N, FH, FW, FC, K, YH, YW, SY, SX, PT, PL, DY, DX).
The caller runs these kernels inside ``blas_single_threaded()``: BLAS runs inside our threads.
Reductions over images (filter and bias gradients) go through per-chunk partial buffers whose
chunking depends on the problem size only, so results do not depend on the thread count.
"""
cimport numpy as cnp
from .arrays cimport float_kind
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from .blas cimport gemm

import numpy as np

cnp.import_array()

cdef extern from "gemm.h" nogil:
    int CNNX_ISA_GENERIC, CNNX_ISA_AVX2, CNNX_ISA_AVX512
    int CNNX_KC_MAX
    ctypedef struct cnnx_bview:
        const float* b
        Py_ssize_t rs, run, ts, cs, group, gs, askip
    int cnnx_isa_supported(int isa)
    void cnnx_tile_of(int isa, int* mr, int* nr)
    Py_ssize_t cnnx_packed_rows(int isa, Py_ssize_t m)
    void cnnx_pack_a(int isa, Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda, Py_ssize_t run,
                     Py_ssize_t rstride, float* out)
    void cnnx_gemm(int isa, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* packed, const float* a,
                   Py_ssize_t lda, const cnnx_bview* v, int accumulate, float* c, Py_ssize_t ldc,
                   Py_ssize_t ldcg, Py_ssize_t kc, Py_ssize_t nc)
    void cnnx_sgemm_nn(int isa, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                       Py_ssize_t lda, const float* b, Py_ssize_t ldb, int accumulate, float* c,
                       Py_ssize_t ldc, Py_ssize_t kc, Py_ssize_t nc)
    double cnnx_fma_loop(int isa, long iterations, float* sink)

cdef extern from "columns.h" nogil:
    void cnnx_column_tile(int isa, int nr, Py_ssize_t n_seg, const Py_ssize_t* seg, Py_ssize_t run,
                          Py_ssize_t du, const float* x, const float* fp, const float* bias, float* y,
                          Py_ssize_t ldy)

cdef extern from "transpose.h" nogil:
    void cnnx_transpose_init()
    void cnnx_transpose_f32(const float* a, Py_ssize_t lda, Py_ssize_t rows, Py_ssize_t cols, float* t,
                            Py_ssize_t ldt, const float* row_add, int vector)
    void cnnx_transpose_f64(const double* a, Py_ssize_t lda, Py_ssize_t rows, Py_ssize_t cols, double* t,
                            Py_ssize_t ldt, const double* row_add)

cnnx_transpose_init()

# The instruction sets of the micro-kernels, by the names CNNX_ISA and the plans use.
ISA_CODES = {"generic": CNNX_ISA_GENERIC, "avx2": CNNX_ISA_AVX2, "avx512": CNNX_ISA_AVX512}
KC_MAX = CNNX_KC_MAX


def supported_isas():
    """The names of the micro-kernel instruction sets this CPU (and OS) can run, widest last."""
    return [name for name, code in sorted(ISA_CODES.items(), key=lambda item: item[1])
            if cnnx_isa_supported(code)]


def gemm_tile(str isa):
    """(MR, NR): the rows and columns of C that one micro-kernel call of ``isa`` computes."""
    cdef int mr, nr
    cnnx_tile_of(ISA_CODES[isa], &mr, &nr)
    return mr, nr


def fma_loop(str isa, long iterations, int n_threads):
    """Run ``isa``'s multiply-add loop (``iterations`` rounds) on each of ``n_threads`` threads;
    return the float operations done in all. The benchmarks time it for the FMA ceiling."""
    cdef int code = ISA_CODES[isa], t
    cdef double total = 0
    cdef float sink[64]
    if not cnnx_isa_supported(code):
        raise ValueError(f"fma_loop: this CPU cannot run {isa}")
    with nogil:
        for t in prange(n_threads, schedule="static", num_threads=n_threads):
            total += cnnx_fma_loop(code, iterations, &sink[t % 64])
    return total


cdef void* numpy_buffer(Py_ssize_t nbytes, list keep) except NULL:
    """A buffer of ``nbytes`` (at least 8) from NumPy, 16-byte aligned and alive while ``keep``
    (which holds it) is: a call's shared buffers come from NumPy, so that cnn_train's planned arena
    holds the large ones and nothing needs freeing on an error."""
    buffer = np.empty(max(8, nbytes), np.uint8)
    keep.append(buffer)
    return cnp.PyArray_DATA(buffer)


cdef struct Geom:
    Py_ssize_t H, W, C, N, FH, FW, FC, K, YH, YW, SY, SX, PT, PL, DY, DX
    Py_ssize_t G, Kg, P, Q, HWC


cdef Geom make_geom(tuple sizes):
    cdef Geom g
    (g.H, g.W, g.C, g.N, g.FH, g.FW, g.FC, g.K,
     g.YH, g.YW, g.SY, g.SX, g.PT, g.PL, g.DY, g.DX) = sizes
    g.G = g.C // g.FC
    g.Kg = g.K // g.G
    g.P = g.YH * g.YW
    g.Q = g.FH * g.FW * g.FC
    g.HWC = g.H * g.W * g.C
    return g


cdef inline void valid_range(Py_ssize_t offset, Py_ssize_t size, Py_ssize_t stride, Py_ssize_t n_out,
                             Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Outputs i in [lo, hi) read inside the data: 0 <= i*stride + offset < size."""
    cdef Py_ssize_t first = 0, last
    if offset < 0:
        first = (-offset + stride - 1) // stride
    last = size - 1 - offset  # largest i*stride allowed
    if last < 0:
        hi[0] = 0
        lo[0] = 0
        return
    hi[0] = min(n_out, last // stride + 1)
    lo[0] = min(first, hi[0])


cdef inline void expand_rows(const floating* src, Py_ssize_t H, Py_ssize_t W, Py_ssize_t n_ch,
                             floating* dst, Py_ssize_t ld, Py_ssize_t YH, Py_ssize_t YW,
                             Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t oy, Py_ssize_t ty,
                             Py_ssize_t ox, Py_ssize_t tx, Py_ssize_t SY, Py_ssize_t SX,
                             Py_ssize_t ja, Py_ssize_t jb) noexcept nogil:
    """dst[p - YH*ja + ld*q] = src[i*SY + oy + u*ty, j*SX + ox + v*tx, c] (0 outside the H x W
    planes) for the rows p = i + YH*j of the columns ja <= j < jb of a YH x YW grid.

    src holds n_ch planes of H x W and q = u + FH*(v + FW*c) is the tap (ty, tx: tap steps).
    """
    cdef Py_ssize_t c, u, v, i, j, i0, i1, j0, j1, ioff, joff, s
    cdef const floating* sc
    cdef floating* col
    cdef floating* d
    for c in range(n_ch):
        sc = src + c * H * W
        for v in range(FW):
            joff = ox + v * tx
            valid_range(joff, W, SX, YW, &j0, &j1)
            j0 = min(max(j0, ja), jb)
            j1 = max(min(j1, jb), j0)
            for u in range(FH):
                ioff = oy + u * ty
                valid_range(ioff, H, SY, YH, &i0, &i1)
                col = dst + ld * (u + FH * (v + FW * c))
                memset(col, 0, (j0 - ja) * YH * sizeof(floating))
                memset(col + (j1 - ja) * YH, 0, (jb - j1) * YH * sizeof(floating))
                if SY == 1 and SX == 1 and YH == H and i0 < i1 and j0 < j1:
                    # Columns of dst and src have the same height: the whole valid block is one
                    # contiguous copy (the few values it drags in from beyond the top and bottom
                    # edges are zeroed next), far cheaper than YW short runs.
                    memcpy(col + i0 + YH * (j0 - ja), sc + i0 + ioff + H * (j0 + joff),
                           (i1 - i0 + YH * (j1 - 1 - j0)) * sizeof(floating))
                    for j in range(j0, j1):
                        d = col + (j - ja) * YH
                        for i in range(i0):
                            d[i] = 0
                        for i in range(i1, YH):
                            d[i] = 0
                    continue
                for j in range(j0, j1):
                    d = col + (j - ja) * YH
                    s = (j * SX + joff) * H + ioff
                    # Short runs (a few to a few dozen pixels): plain loops beat memcpy/memset calls.
                    for i in range(i0):
                        d[i] = 0
                    if SY == 1:
                        for i in range(i0, i1):
                            d[i] = sc[s + i]
                    else:
                        for i in range(i0, i1):
                            d[i] = sc[s + i * SY]
                    for i in range(i1, YH):
                        d[i] = 0


cdef inline void im2row(const floating* x, floating* xrow, Py_ssize_t ld, const Geom* g,
                        Py_ssize_t c0) noexcept nogil:
    """Xrow[p, q] = xpad of one image for channels c0 .. c0+FC-1, stored at xrow[p + ld*q].

    p = i + YH*j is the output pixel and q = u + FH*(v + FW*c) the filter tap; padding reads 0.
    """
    expand_rows(x + c0 * g.H * g.W, g.H, g.W, g.FC, xrow, ld, g.YH, g.YW, g.FH, g.FW,
                -g.PT, g.DY, -g.PL, g.DX, g.SY, g.SX, 0, g.YW)


cdef inline void im2col(const floating* xt, floating* xcol, const Geom* g, Py_ssize_t ja,
                        Py_ssize_t jb) noexcept nogil:
    """Xcol[q, p] = xpad of one image and group for the output columns ja <= j < jb, stored at
    xcol[q + Q*(p - YH*ja)], from xt = its FC channels pixel by pixel (FC x H*W, the transpose of
    X's H*W x FC).

    p = i + YH*j is the output pixel and q = c + FC*(u + FH*v) the filter tap, channels fastest:
    each output pixel's patch is FW runs of FH*FC contiguous values of xt (FW*FH runs of FC when
    dilated). The forward GEMM Y^T = F^T @ Xcol runs faster on this layout than Y = Xrow @ F.
    """
    cdef Py_ssize_t i, j, u, v, u0, u1, v0, v1, ioff, joff
    cdef Py_ssize_t FC = g.FC, FH = g.FH, DY = g.DY, H = g.H
    cdef const floating* s
    cdef floating* dst
    cdef floating* d
    for j in range(ja, jb):
        joff = j * g.SX - g.PL
        valid_range(joff, g.W, g.DX, g.FW, &v0, &v1)
        for i in range(g.YH):
            ioff = i * g.SY - g.PT
            valid_range(ioff, H, DY, FH, &u0, &u1)
            dst = xcol + g.Q * (i + g.YH * (j - ja))
            memset(dst, 0, v0 * FH * FC * sizeof(floating))
            for v in range(v0, v1):
                d = dst + v * FH * FC
                s = xt + FC * (ioff + H * (joff + v * g.DX))
                memset(d, 0, u0 * FC * sizeof(floating))
                if DY == 1:
                    memcpy(d + u0 * FC, s + u0 * FC, (u1 - u0) * FC * sizeof(floating))
                else:
                    for u in range(u0, u1):
                        memcpy(d + u * FC, s + u * DY * FC, FC * sizeof(floating))
                memset(d + u1 * FC, 0, (FH - u1) * FC * sizeof(floating))
            memset(dst + v1 * FH * FC, 0, (g.FW - v1) * FH * FC * sizeof(floating))


cdef inline void row2im(const floating* dxrow, Py_ssize_t ld, floating* dx, const Geom* g,
                        Py_ssize_t c0, floating* scratch) noexcept nogil:
    """The adjoint of im2row: add dXrow[p, q] into dx; entries landing in the padding are dropped.

    ``scratch`` is NULL, or dxrow itself when it may be overwritten: then, at stride 1 with
    YH == H, its entries landing in the top and bottom padding are zeroed, so that each column of
    dXrow is added to dx in one contiguous run. (dxrow may be the caller's read-only dY.)
    """
    cdef Py_ssize_t c, u, v, i, j, i0, i1, j0, j1, ioff, joff, dst, n, q
    cdef Py_ssize_t YH = g.YH, H = g.H, SY = g.SY
    cdef floating* dxc
    cdef const floating* col
    cdef floating* zcol
    cdef floating* d
    for c in range(g.FC):
        dxc = dx + (c0 + c) * g.H * g.W
        for v in range(g.FW):
            joff = v * g.DX - g.PL
            valid_range(joff, g.W, g.SX, g.YW, &j0, &j1)
            for u in range(g.FH):
                ioff = u * g.DY - g.PT
                valid_range(ioff, H, SY, YH, &i0, &i1)
                q = ld * (u + g.FH * (v + g.FW * c))
                col = dxrow + q
                if scratch != NULL and SY == 1 and g.SX == 1 and YH == H and i0 < i1 and j0 < j1:
                    zcol = scratch + q
                    for j in range(j0, j1):
                        for i in range(i0):
                            zcol[j * YH + i] = 0
                        for i in range(i1, YH):
                            zcol[j * YH + i] = 0
                    col = col + i0 + YH * j0
                    d = dxc + i0 + ioff + H * (j0 + joff)
                    n = i1 - i0 + YH * (j1 - 1 - j0)
                    for i in range(n):
                        d[i] += col[i]
                    continue
                for j in range(j0, j1):
                    dst = (j * g.SX + joff) * H + ioff
                    if SY == 1:
                        for i in range(i0, i1):
                            dxc[dst + i] += col[j * YH + i]
                    else:
                        for i in range(i0, i1):
                            dxc[dst + i * SY] += col[j * YH + i]


# OpenBLAS (SciPy's BLAS) multiplies untransposed matrices with m*n*k up to about 1e6 by
# unpacked "small matrix" kernels, ~20% faster than its packed path on our thin products.
cdef enum:
    SMALL_GEMM = 1000000


cdef inline void gemm_nn(int isa, Py_ssize_t kc, Py_ssize_t nc, int m, int n, int k,
                         const floating* a, int lda, const floating* b, int ldb, floating beta, floating* c, int ldc) noexcept nogil:
    """C = A @ B + beta*C (beta 0 or 1): in float32 on the micro-kernels of ``isa`` (>= 0),
    otherwise in BLAS, cut into blocks of columns of C small enough for its small-matrix kernels
    when the blocks stay at least 32 columns wide. The cut depends on the sizes only."""
    cdef long long width = SMALL_GEMM // max(1, <long long> m * k)
    cdef int pieces = 1, p, n0, n1
    if floating is float:
        if isa >= 0:
            cnnx_sgemm_nn(isa, m, n, k, a, lda, b, ldb, beta != 0, c, ldc, kc, nc)
            return
    if width >= 32 and n > width:
        pieces = (n + width - 1) // width
    for p in range(pieces):
        n0 = p * n // pieces
        n1 = (p + 1) * n // pieces
        gemm(b"N"[0], b"N"[0], m, n1 - n0, k, 1, a, lda, b + <Py_ssize_t> ldb * n0, ldb, beta,
             c + <Py_ssize_t> ldc * n0, ldc)


cdef inline void add_bias(floating* y, Py_ssize_t ld, Py_ssize_t rows, const floating* b,
                          Py_ssize_t k0, Py_ssize_t k1) noexcept nogil:
    """y[p + ld*k] += b[k] for p < rows and k0 <= k < k1."""
    cdef Py_ssize_t p, k
    cdef floating bk
    for k in range(k0, k1):
        bk = b[k]
        for p in range(rows):
            y[p + ld * k] += bk


cdef inline floating sum_of(const floating* a, Py_ssize_t n) noexcept nogil:
    """Sum of a[0:n] in a fixed order, over 16 interleaved partial sums (vectorisable, and not
    bound by the latency of one long chain of additions)."""
    cdef floating acc[16]
    cdef floating total = 0
    cdef Py_ssize_t i, lane, full = n - n % 16
    for lane in range(16):
        acc[lane] = 0
    for i in range(0, full, 16):
        for lane in range(16):
            acc[lane] = acc[lane] + a[i + lane]
    for lane in range(16):
        total = total + acc[lane]
    for i in range(full, n):
        total = total + a[i]
    return total


cdef inline void add_bias_derivative(floating* dbc, const floating* dyn, Py_ssize_t K, Py_ssize_t P,
                                     bint first) noexcept nogil:
    """One image's bias derivative into a chunk's partial: dbc[k] is set to (first image of the
    chunk) or added the sum of dY's plane k, so that the chunks' order fixes the bits."""
    cdef Py_ssize_t k
    for k in range(K):
        if first:
            dbc[k] = sum_of(dyn + k * P, P)
        else:
            dbc[k] = dbc[k] + sum_of(dyn + k * P, P)


def _conv_forward(const floating[::1] x, const floating[::1] f, const floating[::1] b, floating[::1] y,
                  tuple sizes, bint identity, bint has_bias, bint direct, bint patch_major,
                  bint shift_cols, Py_ssize_t batch, Py_ssize_t block_cols, int isa, Py_ssize_t kc,
                  Py_ssize_t nc, int n_threads):
    """Y = X (*) F + B for all images, ``batch`` images per GEMM, in parallel over batches.

    identity: F is the identity bank (geometry with FH = FW = 1, FC = K = C): Y is im2row itself.
    direct: 1x1 filters, stride 1, no padding: X_n is already Xrow, Y_n = X_n @ F with no copy
    (batch must be 1). patch_major: Y^T = F^T @ Xcol over the im2col matrix (each patch
    contiguous), ``block_cols`` output columns per GEMM (all YW when batch > 1), else
    Y = Xrow @ F over the im2row matrix (each tap contiguous). shift_cols (patch_major, stride 1
    across, batch 1): im2col for one column of taps (FH*FC) over every image column the taps
    reach; tap column v reads that matrix shifted by v*DX columns, so Y^T is the sum of FW GEMMs
    over a matrix FW times smaller than Xcol.
    """
    cdef Geom g = make_geom(sizes)
    cdef Geom gv = g
    cdef Py_ssize_t n_batches = (g.N + batch - 1) // batch
    cdef Py_ssize_t HW = g.H * g.W
    cdef Py_ssize_t t, n0, nn, M, gi, bb, k, blk, ja, jb, npix, v, buf_size
    cdef floating* buf
    cdef floating* yt
    cdef floating* xt
    cdef floating* yn
    cdef int failed[1]
    # shift_cols: the geometry of one column of taps over all the columns they reach.
    gv.FW = 1
    gv.YW = g.YW + (g.FW - 1) * g.DX
    gv.Q = g.FH * g.FC
    if shift_cols:
        buf_size = g.YH * (block_cols + (g.FW - 1) * g.DX) * gv.Q
    elif patch_major:
        buf_size = batch * g.YH * block_cols * g.Q
    else:
        buf_size = batch * g.P * g.Q
    failed[0] = 0
    with nogil, parallel(num_threads=n_threads):
        buf = NULL
        yt = NULL
        xt = NULL
        if not identity and not direct:
            buf = <floating*> malloc(buf_size * sizeof(floating))
            yt = <floating*> malloc(batch * g.P * g.K * sizeof(floating))
            if patch_major:
                xt = <floating*> malloc(batch * HW * g.FC * sizeof(floating))
            if buf == NULL or yt == NULL or (patch_major and xt == NULL):
                failed[0] = 1
        for t in prange(n_batches, schedule="dynamic"):
            if failed[0]:
                continue
            n0 = t * batch
            nn = min(batch, g.N - n0)
            M = nn * g.P
            if identity:
                yn = &y[0] + n0 * g.P * g.K
                im2row(&x[0] + n0 * g.HWC, yn, g.P, &g, 0)
                if has_bias:
                    add_bias(yn, g.P, g.P, &b[0], 0, g.K)
            elif direct:
                yn = &y[0] + n0 * g.P * g.K
                for gi in range(g.G):
                    gemm_nn(isa, kc, nc, g.P, g.Kg, g.Q, &x[0] + n0 * g.HWC + gi * g.FC * g.P, g.P,
                            &f[0] + gi * g.Kg * g.Q, g.Q, 0, yn + gi * g.Kg * g.P, g.P)
                if has_bias:
                    add_bias(yn, g.P, g.P, &b[0], 0, g.K)
            elif patch_major:
                # Y^T (Kg x pixels) = F^T @ Xcol per group, ``block_cols`` output columns at a time
                # (so that Xcol stays in cache), transposed into Y image by image.
                for gi in range(g.G):
                    for bb in range(nn):
                        transpose_into(&x[0] + (n0 + bb) * g.HWC + gi * g.FC * HW, HW, g.FC,
                                       xt + bb * HW * g.FC, g.FC)
                    for blk in range((g.YW + block_cols - 1) // block_cols):
                        ja = blk * block_cols
                        jb = min(g.YW, ja + block_cols)
                        npix = g.YH * (jb - ja)
                        if shift_cols:
                            # One column of taps over the block's columns and the (FW-1)*DX
                            # beyond: tap column v reads it shifted by v*DX image columns.
                            im2col(xt, buf, &gv, ja, jb + (g.FW - 1) * g.DX)
                            for v in range(g.FW):
                                gemm_nn(isa, kc, nc, g.Kg, npix, gv.Q,
                                        &f[0] + gi * g.Kg + v * g.K * gv.Q, g.K,
                                        buf + gv.Q * g.YH * v * g.DX, gv.Q, 0 if v == 0 else 1,
                                        yt, g.Kg)
                        else:
                            for bb in range(nn):
                                im2col(xt + bb * HW * g.FC, buf + bb * npix * g.Q, &g, ja, jb)
                            gemm_nn(isa, kc, nc, g.Kg, nn * npix, g.Q, &f[0] + gi * g.Kg, g.K, buf, g.Q,
                                    0, yt, g.Kg)
                        for bb in range(nn):
                            transpose_into(yt + bb * npix * g.Kg, g.Kg, npix,
                                           &y[0] + (n0 + bb) * g.P * g.K + gi * g.Kg * g.P
                                           + g.YH * ja, g.P)
                if has_bias:
                    for bb in range(nn):
                        add_bias(&y[0] + (n0 + bb) * g.P * g.K, g.P, g.P, &b[0], 0, g.K)
            else:
                # Y (M x K) = Xrow @ F per group; with several images, M stacks their pixels and
                # the result is copied out image by image.
                for gi in range(g.G):
                    for bb in range(nn):
                        im2row(&x[0] + (n0 + bb) * g.HWC, buf + bb * g.P, M, &g, gi * g.FC)
                    if nn == 1:
                        gemm_nn(isa, kc, nc, M, g.Kg, g.Q, buf, M, &f[0] + gi * g.Kg * g.Q, g.Q, 0,
                                &y[0] + n0 * g.P * g.K + gi * g.Kg * g.P, g.P)
                    else:
                        gemm_nn(isa, kc, nc, M, g.Kg, g.Q, buf, M, &f[0] + gi * g.Kg * g.Q, g.Q, 0,
                                yt + gi * g.Kg * M, M)
                for bb in range(nn):
                    yn = &y[0] + (n0 + bb) * g.P * g.K
                    if nn > 1:
                        for k in range(g.K):
                            memcpy(yn + k * g.P, yt + bb * g.P + k * M, g.P * sizeof(floating))
                    if has_bias:
                        add_bias(yn, g.P, g.P, &b[0], 0, g.K)
        free(buf)
        free(yt)
        free(xt)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the im2row buffers")


def conv_forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_conv_forward``."""
    float_kind("cnnx._ext.conv.conv_forward", x)
    return _conv_forward(x, *args)


cdef inline void pad_channels_first(const float* x, const Geom* g, Py_ssize_t c0, Py_ssize_t Hp,
                                    Py_ssize_t Wp, float* xtp) noexcept nogil:
    """xtp[c + FC*(i + Hp*j)] = xpad[i - PT, j - PL, c0 + c] of one image for the Hp x Wp padded
    pixels the filters reach: channels first, zeros outside the H x W image."""
    cdef Py_ssize_t j, i0, i1, col
    cdef Py_ssize_t FC = g.FC, H = g.H, HW = g.H * g.W
    cdef float* d
    i0 = min(Hp, max(0, g.PT))
    i1 = max(i0, min(Hp, g.PT + H))
    for j in range(Wp):
        d = xtp + FC * Hp * j
        col = j - g.PL
        if col < 0 or col >= g.W:
            memset(d, 0, FC * Hp * sizeof(float))
            continue
        memset(d, 0, FC * i0 * sizeof(float))
        memset(d + FC * i1, 0, FC * (Hp - i1) * sizeof(float))
        if i1 > i0:
            cnnx_transpose_f32(x + c0 * HW + H * col + i0 - g.PT, HW, i1 - i0, FC, d + FC * i0, FC, NULL, 1)


cdef struct Span:
    # Outputs [j0, j1) along one axis (rows or columns) whose taps reach inside the image through
    # filter positions [v0, v1) on that axis only: the others read padding zeros there, so the
    # implicit GEMMs skip them.
    Py_ssize_t j0, j1, v0, v1


cdef Py_ssize_t reach_spans(Py_ssize_t n_out, Py_ssize_t offset, Py_ssize_t step, Py_ssize_t size,
                            Py_ssize_t dilation, Py_ssize_t FW, bint skip, Span* spans) noexcept nogil:
    """Cut outputs 0 .. n_out-1 along one axis, where output j reads inputs j*step + offset +
    v*dilation (v < FW) of ``size``, into runs of outputs that reach the same filter positions;
    write them to ``spans`` (room for 2*FW - 1) and return how many. Without ``skip``, or when
    padding would make more runs than that, one span of all outputs and filter positions."""
    cdef Py_ssize_t j, v0, v1, n = 0
    if skip:
        for j in range(n_out):
            valid_range(j * step + offset, size, dilation, FW, &v0, &v1)
            if n > 0 and spans[n - 1].v0 == v0 and spans[n - 1].v1 == v1:
                spans[n - 1].j1 = j + 1
                continue
            if n == 2 * FW - 1:
                n = 0
                break
            spans[n].j0, spans[n].j1, spans[n].v0, spans[n].v1 = j, j + 1, v0, v1
            n += 1
    if n == 0:
        spans[0].j0, spans[0].j1, spans[0].v0, spans[0].v1 = 0, n_out, 0, FW
        n = 1
    return n


# Output column spans narrower than this keep their rows whole: cut by rows, their rectangles would
# be a pixel or two, too narrow for the tiles to keep the FMA units busy. (AMD Zen 4, AVX-512,
# 1 thread, GFLOP/s counting all taps, forward / data grad: lenet conv2 109 / 110 without row spans,
# 116 / 114 at 4, 114 / 114 at 8; conv3 118 / 120, 130 / 128, 120 / 119.)
cdef enum:
    SPLIT_ROWS_MIN_COLUMNS = 4


cdef struct Patches:
    # The output rectangles of an implicit GEMM and its packed A: taps c + FC*(u + FH*v) of FC
    # channels, FH filter rows and FW filter columns. Each column span of at least
    # SPLIT_ROWS_MIN_COLUMNS columns is cut by the row spans rows[:n_rows]; a narrower one keeps all
    # rows, rows[whole]. For each of those row spans r, A's columns of filter rows
    # [rows[r].v0, rows[r].v1) of every filter column are packed at packed_at[r] (pack_patches).
    Span* rows
    Span* cols
    Py_ssize_t* packed_at
    Py_ssize_t n_rows, whole, n_cols, FC, FH, FW


cdef Patches make_patches(Py_ssize_t OH, Py_ssize_t row_offset, Py_ssize_t SY, Py_ssize_t H, Py_ssize_t OW,
                          Py_ssize_t col_offset, Py_ssize_t SX, Py_ssize_t W, Py_ssize_t DX, Py_ssize_t FC,
                          Py_ssize_t FH, Py_ssize_t FW, bint skip, list keep) except *:
    """The rectangles of an OH x OW output whose row i reads input rows i*SY + row_offset + u
    (u < FH) of H and whose column j reads input columns j*SX + col_offset + v*DX (v < FW) of W;
    with ``skip`` False, one rectangle of all outputs and taps. Its buffers live while ``keep``."""
    cdef Patches pt
    pt.rows = <Span*> numpy_buffer(2 * FH * sizeof(Span), keep)
    pt.cols = <Span*> numpy_buffer((2 * FW - 1) * sizeof(Span), keep)
    pt.packed_at = <Py_ssize_t*> numpy_buffer(2 * FH * sizeof(Py_ssize_t), keep)
    pt.n_rows = reach_spans(OH, row_offset, SY, H, 1, FH, skip, pt.rows)
    pt.whole = 0
    if pt.n_rows > 1:
        pt.whole = pt.n_rows
        pt.rows[pt.whole].j0, pt.rows[pt.whole].j1, pt.rows[pt.whole].v0, pt.rows[pt.whole].v1 = 0, OH, 0, FH
    pt.n_cols = reach_spans(OW, col_offset, SX, W, DX, FW, skip, pt.cols)
    pt.FC, pt.FH, pt.FW = FC, FH, FW
    return pt


cdef Py_ssize_t pack_patches(int isa, Py_ssize_t m, const float* a, Py_ssize_t lda, Patches* pt,
                             float* out) noexcept nogil:
    """A (m x FC*FH*FW, lda) packed for gemm_patches, row span by row span, at out + pt.packed_at;
    returns the floats this takes (with ``out`` NULL, only counts them and sets packed_at)."""
    cdef Py_ssize_t r, run, total = 0, mp = cnnx_packed_rows(isa, m)
    for r in range(pt.whole + 1):
        run = (pt.rows[r].v1 - pt.rows[r].v0) * pt.FC
        pt.packed_at[r] = total
        if out != NULL:
            cnnx_pack_a(isa, m, run * pt.FW, a + lda * pt.FC * pt.rows[r].v0, lda, run, pt.FC * pt.FH, out + total)
        total += mp * run * pt.FW
    return total


cdef void gemm_patch(int isa, Py_ssize_t m, const float* packed, const Patches* pt, Py_ssize_t r, Py_ssize_t s,
                     cnnx_bview view, float* c, Py_ssize_t kc, Py_ssize_t nc) noexcept nogil:
    """The rectangle of row span r and column span s of gemm_patches. Its columns are grouped along
    its longer side, so that its tiles are as wide as it allows."""
    cdef Span rs = pt.rows[r], sp = pt.cols[s]
    cdef Py_ssize_t OH = view.group, cs = view.cs, gs = view.gs, ldc, ldcg
    cdef Py_ssize_t run = (rs.v1 - rs.v0) * pt.FC, n_i = rs.j1 - rs.j0, n_j = sp.j1 - sp.j0
    cdef int MR, NR
    cnnx_tile_of(isa, &MR, &NR)
    view.run = run
    view.b = view.b + rs.j0 * cs + sp.j0 * gs + rs.v0 * pt.FC + sp.v0 * view.ts
    if n_i >= n_j:
        view.group, view.cs, view.gs, ldc, ldcg = n_i, cs, gs, m, m * OH
    else:
        view.group, view.cs, view.gs, ldc, ldcg = n_j, gs, cs, m * OH, m
    cnnx_gemm(isa, m, n_i * n_j, (sp.v1 - sp.v0) * run, packed + pt.packed_at[r] + MR * sp.v0 * run, NULL,
              run * pt.FW, &view, 0, c + m * (rs.j0 + OH * sp.j0), ldc, ldcg, kc, nc)


cdef void gemm_patches(int isa, Py_ssize_t m, const float* packed, const Patches* pt, cnnx_bview view, float* c,
                       Py_ssize_t kc, Py_ssize_t nc) noexcept nogil:
    """C (m x OH*OW, ld m, pixel i + OH*j) = A @ B of an implicit GEMM whose B ``view`` has one group
    of OH columns per output column (cs, gs apart) and one run of FH*FC taps c + FC*u per filter
    column (ts apart), rectangle by rectangle: each over the filter rows and columns its outputs
    reach inside the image (A packed by pack_patches)."""
    cdef Py_ssize_t r, s
    for s in range(pt.n_cols):
        if pt.cols[s].j1 - pt.cols[s].j0 < SPLIT_ROWS_MIN_COLUMNS:
            gemm_patch(isa, m, packed, pt, pt.whole, s, view, c, kc, nc)
            continue
        for r in range(pt.n_rows):
            gemm_patch(isa, m, packed, pt, r, s, view, c, kc, nc)


cdef void implicit_image(const float* x, const float* packed, const Patches* pt, const float* b, float* y,
                         const Geom* g, Py_ssize_t gi, Py_ssize_t Hp, Py_ssize_t Wp, float* xtp, float* yt, int isa,
                         Py_ssize_t kc, Py_ssize_t nc) noexcept nogil:
    """One image and group of _conv_forward_implicit (its B view is local, so thread-private)."""
    cdef cnnx_bview view
    pad_channels_first(x, g, gi * g.FC, Hp, Wp, xtp)
    view.b = xtp
    view.rs = 1
    view.askip = 0
    view.run = g.FH * g.FC
    view.ts = g.FC * Hp * g.DX
    view.cs = g.FC * g.SY
    view.group = g.YH
    view.gs = g.FC * Hp * g.SX
    gemm_patches(isa, g.Kg, packed, pt, view, yt, kc, nc)
    transpose_into(yt, g.Kg, g.P, y + gi * g.Kg * g.P, g.P, b + gi * g.Kg if b != NULL else NULL)


def _conv_forward_implicit(const float[::1] x, const float[::1] fwv, const float[::1] b, float[::1] y,
                           tuple sizes, bint has_bias, bint skip_padding, int isa, Py_ssize_t kc, Py_ssize_t nc,
                           int n_threads):
    """Y = X (*) F + B (float32, DY = 1) by implicit GEMM: Y^T (Kg x pixels) = F^T @ Xcol per image
    and group on the micro-kernels of ``isa``, with Xcol never built: the GEMM reads each output
    pixel's patch in place from the image padded and channels first (FW runs of FH*FC values, one
    per filter column; cnnx_bview). ``fwv`` is F^T (K x Q, taps ordered c + FC*(u + FH*v)),
    packed once for all images; Y^T is transposed into Y with the biases added on the way.
    ``skip_padding`` (the caller checked that F is finite, so that 0 * F is 0): the outputs skip
    the filter rows and columns that only reach padding (make_patches).
    """
    cdef Geom g = make_geom(sizes)
    cdef Py_ssize_t Hp = (g.YH - 1) * g.SY + g.FH, Wp = (g.YW - 1) * g.SX + (g.FW - 1) * g.DX + 1
    cdef Py_ssize_t n, gi, per_group
    cdef list keep = []
    cdef Patches pt = make_patches(g.YH, -g.PT, g.SY, g.H, g.YW, -g.PL, g.SX, g.W, g.DX, g.FC, g.FH, g.FW,
                                   skip_padding, keep)
    cdef float* packed
    cdef float* xtp
    cdef float* yt
    cdef int failed[1]
    failed[0] = 0
    per_group = pack_patches(isa, g.Kg, NULL, g.K, &pt, NULL)
    packed = <float*> numpy_buffer(g.G * per_group * sizeof(float), keep)
    with nogil:
        for gi in range(g.G):
            pack_patches(isa, g.Kg, &fwv[0] + gi * g.Kg, g.K, &pt, packed + gi * per_group)
        with parallel(num_threads=n_threads):
            xtp = <float*> malloc(g.FC * Hp * Wp * sizeof(float))
            yt = <float*> malloc(g.Kg * g.P * sizeof(float))
            if xtp == NULL or yt == NULL:
                failed[0] = 1
            for n in prange(g.N, schedule="dynamic"):
                if failed[0]:
                    continue
                for gi in range(g.G):
                    implicit_image(&x[0] + n * g.HWC, packed + gi * per_group, &pt, &b[0] if has_bias else NULL,
                                   &y[0] + n * g.P * g.K, &g, gi, Hp, Wp, xtp, yt, isa, kc, nc)
            free(xtp)
            free(yt)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the implicit GEMM's buffers")


def _check_float32(entry, x):
    """The implicit GEMM entries run the own kernels, which are float32 only: a TypeError otherwise."""
    if float_kind(f"cnnx._ext.conv.{entry}", x) != 0:
        raise TypeError(f"cnnx._ext.conv.{entry}: the implicit GEMM runs float32 only, not {x.dtype}")


def conv_forward_implicit(x, *args):
    """Check that ``x`` is float32 (the own kernels' type), then run ``_conv_forward_implicit``."""
    _check_float32("conv_forward_implicit", x)
    return _conv_forward_implicit(x, *args)


cdef inline void pad_columns(const float* x, const Geom* g, Py_ssize_t c0, Py_ssize_t Hp, Py_ssize_t Wp,
                             float* xp) noexcept nogil:
    """xp[r + Hp*(j + Wp*c)] = xpad[r - PT, j - PL, c0 + c] of one image for the Hp x Wp padded
    pixels the tiles read: MatConvNet's own H-major layout, zeros outside the H x W image."""
    cdef Py_ssize_t c, j, col, r0, r1
    cdef float* d
    r0 = min(Hp, max(0, g.PT))
    r1 = max(r0, min(Hp, g.PT + g.H))
    for c in range(g.FC):
        for j in range(Wp):
            d = xp + Hp * (j + Wp * c)
            col = j - g.PL
            if col < 0 or col >= g.W:
                memset(d, 0, Hp * sizeof(float))
                continue
            memset(d, 0, r0 * sizeof(float))
            memcpy(d + r0, x + (c0 + c) * g.H * g.W + g.H * col + r0 - g.PT, (r1 - r0) * sizeof(float))
            memset(d + r1, 0, (Hp - r1) * sizeof(float))


cdef void columns_image(const float* xn, const float* packed, const Py_ssize_t* segs, const Span* spans,
                        Py_ssize_t n_spans, const float* b, float* yn, const Geom* g, Py_ssize_t gi, Py_ssize_t Hp,
                        Py_ssize_t Wp, Py_ssize_t MR, Py_ssize_t NR, float* xp, float* scratch,
                        int isa) noexcept nogil:
    """One image and group of _conv_forward_columns: every span's output columns, filter panel by
    panel (its packed weights stay in L1 over the columns), MR rows of a column per tile; a last
    tile short of MR rows runs on ``scratch``, whose rows that exist are copied out."""
    cdef Py_ssize_t s, k0, k1, j, t, i0, rows, k, n_seg, taps, at = 0, seg_at = 0
    cdef Py_ssize_t panels = (g.Kg + NR - 1) // NR, panel
    cdef const float* fp
    cdef const float* bias
    cdef float* yt
    pad_columns(xn, g, gi * g.FC, Hp, Wp, xp)
    for s in range(n_spans):
        n_seg = g.FC * (spans[s].v1 - spans[s].v0)
        taps = n_seg * g.FH
        for panel in range(panels):
            k0 = panel * g.Kg // panels
            k1 = (panel + 1) * g.Kg // panels
            fp = packed + at + taps * k0
            bias = b + gi * g.Kg + k0 if b != NULL else NULL
            for j in range(spans[s].j0, spans[s].j1):
                for t in range((g.YH + MR - 1) // MR):
                    i0 = t * MR
                    rows = min(MR, g.YH - i0)
                    yt = yn + (gi * g.Kg + k0) * g.P + j * g.YH + i0
                    if rows == MR:
                        cnnx_column_tile(isa, <int> (k1 - k0), n_seg, segs + seg_at, g.FH, g.DY,
                                         xp + Hp * g.SX * j + i0, fp, bias, yt, g.P)
                        continue
                    cnnx_column_tile(isa, <int> (k1 - k0), n_seg, segs + seg_at, g.FH, g.DY,
                                     xp + Hp * g.SX * j + i0, fp, bias, scratch, MR)
                    for k in range(k1 - k0):
                        memcpy(yt + k * g.P, scratch + k * MR, rows * sizeof(float))
        at += taps * g.Kg
        seg_at += n_seg


cdef void pack_column_filters(const float* f, const Geom* g, Py_ssize_t gi, Py_ssize_t v0, Py_ssize_t v1,
                              Py_ssize_t NR, float* out) noexcept nogil:
    """Group gi's filters over filter columns [v0, v1) for columns_image: panel by panel (as
    columns_image cuts them), each tap (c, v, u) in that order with the panel's filters after
    one another. F is FH x FW x FC x K, Fortran order."""
    cdef Py_ssize_t panels = (g.Kg + NR - 1) // NR, panel, k0, k1, c, v, u, k, t
    cdef Py_ssize_t taps = g.FC * (v1 - v0) * g.FH
    for panel in range(panels):
        k0 = panel * g.Kg // panels
        k1 = (panel + 1) * g.Kg // panels
        t = 0
        for c in range(g.FC):
            for v in range(v0, v1):
                for u in range(g.FH):
                    for k in range(k0, k1):
                        out[taps * k0 + t * (k1 - k0) + k - k0] = f[u + g.FH * (v + g.FW * c) + g.Q * (gi * g.Kg + k)]
                    t += 1


def _conv_forward_columns(const float[::1] x, const float[::1] f, const float[::1] b, float[::1] y, tuple sizes,
                          bint has_bias, bint skip_padding, int isa, int n_threads):
    """Y = X (*) F + B (float32, vertical stride 1) with the output pixels of an image column as the
    tiles' vectors (columns.h): each image padded in its own H-major layout (pad_columns, no
    transpose), the filters packed once (per group, span of output columns and panel of at most NR
    filters: taps channel by channel, filter column by filter column, row by row), Y written in
    place. ``skip_padding`` (the caller checked that F is finite, so that 0 * F is 0): output
    columns skip the filter columns that only reach left or right padding (reach_spans)."""
    cdef Geom g = make_geom(sizes)
    cdef int MR, NR
    cnnx_tile_of(isa, &MR, &NR)
    cdef Py_ssize_t Hp = (g.YH + MR - 1) // MR * MR + (g.FH - 1) * g.DY
    cdef Py_ssize_t Wp = (g.YW - 1) * g.SX + (g.FW - 1) * g.DX + 1
    cdef Py_ssize_t n, gi, s, c, v, u, k, n_spans = 0, n_segs = 0, per_group = 0, at, seg_at
    cdef list keep = []
    cdef Span* spans = <Span*> numpy_buffer((2 * g.FW - 1) * sizeof(Span), keep)
    cdef Py_ssize_t* segs
    cdef float* packed
    cdef float* xp
    cdef float* scratch
    cdef int failed[1]
    failed[0] = 0
    n_spans = reach_spans(g.YW, -g.PL, g.SX, g.W, g.DX, g.FW, skip_padding, spans)
    for s in range(n_spans):
        n_segs += g.FC * (spans[s].v1 - spans[s].v0)
    per_group = n_segs * g.FH * g.Kg
    segs = <Py_ssize_t*> numpy_buffer(n_segs * sizeof(Py_ssize_t), keep)
    packed = <float*> numpy_buffer(g.G * per_group * sizeof(float), keep)
    with nogil:
        # Per span: one segment per (channel, filter column), and the weights of each panel of
        # filters tap after tap in the same order (k fastest within a panel).
        seg_at = 0
        at = 0
        for s in range(n_spans):
            for c in range(g.FC):
                for v in range(spans[s].v0, spans[s].v1):
                    segs[seg_at + c * (spans[s].v1 - spans[s].v0) + v - spans[s].v0] = Hp * (v * g.DX + Wp * c)
            for gi in range(g.G):
                pack_column_filters(&f[0], &g, gi, spans[s].v0, spans[s].v1, NR,
                                    packed + gi * per_group + at)
            at += g.FC * (spans[s].v1 - spans[s].v0) * g.FH * g.Kg
            seg_at += g.FC * (spans[s].v1 - spans[s].v0)
        with parallel(num_threads=n_threads):
            xp = <float*> malloc(g.FC * Hp * Wp * sizeof(float))
            scratch = <float*> malloc(MR * NR * sizeof(float))
            if xp == NULL or scratch == NULL:
                failed[0] = 1
            for n in prange(g.N, schedule="dynamic"):
                if failed[0]:
                    continue
                for gi in range(g.G):
                    columns_image(&x[0] + n * g.HWC, packed + gi * per_group, segs, spans, n_spans,
                                  &b[0] if has_bias else NULL, &y[0] + n * g.P * g.K, &g, gi, Hp, Wp, MR, NR,
                                  xp, scratch, isa)
            free(xp)
            free(scratch)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the column tiles' buffers")


def conv_forward_columns(x, *args):
    """Check that ``x`` is float32 (the own kernels' type), then run ``_conv_forward_columns``."""
    _check_float32("conv_forward_columns", x)
    return _conv_forward_columns(x, *args)


cdef inline void transpose_into(const floating* a, Py_ssize_t rows, Py_ssize_t cols, floating* t,
                                Py_ssize_t ldt, const floating* row_add=NULL) noexcept nogil:
    """t[c + ldt*r] = a[r + rows*c] (+ row_add[r] unless NULL): the rows x cols matrix a,
    transposed into t (ld ldt); transpose.h's blocked copies."""
    if floating is float:
        cnnx_transpose_f32(a, rows, rows, cols, t, ldt, row_add, 1)
    else:
        cnnx_transpose_f64(a, rows, rows, cols, t, ldt, row_add)


def transpose(const float[::1] a, Py_ssize_t rows, Py_ssize_t cols, const float[::1] row_add=None,
              bint vector=True):
    """The rows x cols column-major float32 matrix ``a`` transposed (cols x rows, column-major),
    plus ``row_add[r]`` on row r of ``a``; ``vector`` False runs the scalar loop. For the tests."""
    if a.shape[0] != rows * cols or (row_add is not None and row_add.shape[0] != rows):
        raise ValueError("transpose: a must hold rows*cols values and row_add rows values")
    out = cnp.PyArray_EMPTY(1, [max(1, rows * cols)], cnp.NPY_FLOAT32, 0)
    cdef float[::1] t = out
    if rows * cols:
        cnnx_transpose_f32(&a[0], rows, rows, cols, &t[0], cols, &row_add[0] if row_add is not None else NULL,
                           vector)
    return out[:rows * cols]


def _conv_backward(const floating[::1] x, const floating[::1] ft, const floating[::1] dy, floating[::1] dx,
                   floating[::1] dft_parts, floating[::1] db_parts, tuple sizes, bint identity,
                   bint direct, bint need_dx, bint need_df, bint need_db, Py_ssize_t batch,
                   Py_ssize_t n_chunks, int isa, Py_ssize_t kc, Py_ssize_t nc,
                   int n_threads):
    """dX, and per-chunk partial dF^T and dB, for all images; in parallel over chunks of images.

    Works with dY transposed (dYt, K x pixels, the pixels of ``batch`` images side by side): the
    GEMMs dF^T += dYt @ Xrow and dXrow = dYt^T @ F^T run faster in OpenBLAS than their
    untransposed forms for these thin shapes. ``ft`` is F^T (K x Q). The batches are split into
    ``n_chunks`` contiguous chunks; chunk c accumulates its images in order into
    dft_parts[c*K*Q : (c+1)*K*Q] (K x Q) and db_parts[c*K : (c+1)*K]; the caller sums the chunks.
    """
    cdef Geom g = make_geom(sizes)
    cdef Py_ssize_t n_batches = (g.N + batch - 1) // batch
    cdef Py_ssize_t c, t, n0, nn, M, gi, bb, k
    cdef bint first
    cdef floating s
    cdef floating* xrow
    cdef floating* dxrow
    cdef floating* dyt
    cdef floating* dfc
    cdef floating* dbc
    cdef const floating* a
    cdef int failed[1]
    failed[0] = 0
    with nogil, parallel(num_threads=n_threads):
        xrow = NULL
        dxrow = NULL
        dyt = NULL
        if need_df and not direct and not identity:
            xrow = <floating*> malloc(batch * g.P * g.Q * sizeof(floating))
            if xrow == NULL:
                failed[0] = 1
        if need_dx and not direct and not identity:
            dxrow = <floating*> malloc(batch * g.P * g.Q * sizeof(floating))
            if dxrow == NULL:
                failed[0] = 1
        if not identity:
            dyt = <floating*> malloc(batch * g.P * g.K * sizeof(floating))
            if dyt == NULL:
                failed[0] = 1
        for c in prange(n_chunks, schedule="dynamic"):
            if failed[0]:
                continue
            dfc = &dft_parts[0] + c * g.Q * g.K
            dbc = &db_parts[0] + c * g.K
            first = True
            for t in range(c * n_batches // n_chunks, (c + 1) * n_batches // n_chunks):
                n0 = t * batch
                nn = min(batch, g.N - n0)
                M = nn * g.P
                if need_db:
                    for k in range(g.K):
                        s = 0
                        for bb in range(nn):
                            s = s + sum_of(&dy[0] + (n0 + bb) * g.P * g.K + k * g.P, g.P)
                        if first:
                            dbc[k] = s
                        else:
                            dbc[k] = dbc[k] + s
                if identity:
                    if need_dx:
                        memset(&dx[0] + n0 * g.HWC, 0, g.HWC * sizeof(floating))
                        row2im(&dy[0] + n0 * g.P * g.K, g.P, &dx[0] + n0 * g.HWC, &g, 0, NULL)
                    first = False
                    continue
                if not need_df and not need_dx:
                    first = False
                    continue
                for bb in range(nn):
                    transpose_into(&dy[0] + (n0 + bb) * g.P * g.K, g.P, g.K, dyt + bb * g.P * g.K,
                                   g.K)
                if need_dx and not direct:
                    memset(&dx[0] + n0 * g.HWC, 0, nn * g.HWC * sizeof(floating))
                for gi in range(g.G):
                    if need_df:
                        if direct:
                            a = &x[0] + n0 * g.HWC + gi * g.FC * g.P
                        else:
                            for bb in range(nn):
                                im2row(&x[0] + (n0 + bb) * g.HWC, xrow + bb * g.P, M, &g, gi * g.FC)
                            a = xrow
                        gemm_nn(isa, kc, nc, g.Kg, g.Q, M, dyt + gi * g.Kg, g.K, a, M, 0 if first else 1,
                                dfc + gi * g.Kg, g.K)
                    if need_dx:
                        if direct:
                            gemm(b"T"[0], b"N"[0], g.P, g.Q, g.Kg, 1, dyt + gi * g.Kg, g.K,
                                 &ft[0] + gi * g.Kg, g.K, 0, &dx[0] + n0 * g.HWC + gi * g.FC * g.P, g.P)
                        else:
                            gemm(b"T"[0], b"N"[0], M, g.Q, g.Kg, 1, dyt + gi * g.Kg, g.K,
                                 &ft[0] + gi * g.Kg, g.K, 0, dxrow, M)
                            for bb in range(nn):
                                row2im(dxrow + bb * g.P, M, &dx[0] + (n0 + bb) * g.HWC, &g, gi * g.FC,
                                       dxrow + bb * g.P)
                first = False
        free(xrow)
        free(dxrow)
        free(dyt)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the im2row buffers")


def conv_backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_conv_backward``."""
    float_kind("cnnx._ext.conv.conv_backward", x)
    return _conv_backward(x, *args)


def _conv_backward_shifted(const floating[::1] x, const floating[::1] fkg, const floating[::1] dy,
                           floating[::1] dx, floating[::1] dft_parts, floating[::1] db_parts, tuple sizes,
                           bint need_dx, bint need_df, bint need_db, Py_ssize_t block_cols,
                           Py_ssize_t n_chunks, int isa, Py_ssize_t kc, Py_ssize_t nc,
                   int n_threads):
    """dX, and per-chunk partial dF and dB, for stride 1, with matrices one column of taps wide.

    A column of taps (v fixed) over all output columns is the same matrix for every v, shifted by
    v*DX image columns; so each GEMM below runs over FH*FC (or FH*Kg) taps, FW of them accumulate,
    and the expanded matrices are FW times smaller than im2row's.

    Filters: Er[p, (u, c)] = xpad[i - PT + u*DY, j - PL, c] over the output rows and the
    YW + (FW-1)*DX columns the taps reach, and dF^T[:, :, :, v] += dY^T @ Er shifted by v*DX
    columns, into dft_parts (chunk by chunk, each a K x FH x FC x FW array) in the order dF^T
    has when taken from the GEMM. Data: the flipped-filter correlation dX^T[c, x] =
    sum_(u,v,k) F[u, v, c, k] * dY[x + (PT, PL) - (u*DY, v*DX), k], with Ec the im2col (channels
    first) of dY^T for one column of flipped taps, and ``fkg`` the flipped filters as an
    FC x Kg x FH x FW x G array (read untransposed: OpenBLAS runs these small products faster).
    Both are built ``block_cols`` columns at a time.
    """
    cdef Geom g = make_geom(sizes)
    cdef Geom gd = g
    cdef Py_ssize_t HW = g.H * g.W, QR = g.FH * g.FC, QC = g.FH * g.Kg, EXTRA = (g.FW - 1) * g.DX
    cdef Py_ssize_t c, n, gi, k, v, blk, ja, jb, npix, ldr
    cdef bint first
    cdef floating* er
    cdef floating* ec
    cdef floating* dyt
    cdef floating* dxt
    cdef floating* dfc
    cdef floating* dbc
    cdef const floating* dyn
    cdef int failed[1]
    # Ec's geometry: dY^T's Kg channels are the input, dX's H x (W + EXTRA) grid the output.
    gd.H, gd.W, gd.FC, gd.YH, gd.YW, gd.FW = g.YH, g.YW, g.Kg, g.H, g.W + EXTRA, 1
    gd.SY, gd.SX, gd.PT, gd.PL, gd.Q = 1, 1, (g.FH - 1) * g.DY - g.PT, EXTRA - g.PL, QC
    failed[0] = 0
    with nogil, parallel(num_threads=n_threads):
        er = NULL
        ec = NULL
        dyt = NULL
        dxt = NULL
        if need_df:
            er = <floating*> malloc(g.YH * (block_cols + EXTRA) * QR * sizeof(floating))
        if need_dx:
            ec = <floating*> malloc(g.H * (block_cols + EXTRA) * QC * sizeof(floating))
            dxt = <floating*> malloc(g.H * block_cols * g.FC * sizeof(floating))
        if need_df or need_dx:
            dyt = <floating*> malloc(g.P * g.Kg * sizeof(floating))
            if dyt == NULL or (need_df and er == NULL) or (need_dx and (ec == NULL or dxt == NULL)):
                failed[0] = 1
        for c in prange(n_chunks, schedule="dynamic"):
            if failed[0]:
                continue
            dfc = &dft_parts[0] + c * g.Q * g.K
            dbc = &db_parts[0] + c * g.K
            first = True
            for n in range(c * g.N // n_chunks, (c + 1) * g.N // n_chunks):
                dyn = &dy[0] + n * g.P * g.K
                if need_db:
                    add_bias_derivative(dbc, dyn, g.K, g.P, first)
                if not need_df and not need_dx:
                    first = False
                    continue
                for gi in range(g.G):
                    transpose_into(dyn + gi * g.Kg * g.P, g.P, g.Kg, dyt, g.Kg)
                    for blk in range((g.YW + block_cols - 1) // block_cols):
                        if not need_df:
                            break
                        ja = blk * block_cols
                        jb = min(g.YW, ja + block_cols)
                        npix = g.YH * (jb - ja)
                        ldr = g.YH * (jb - ja + EXTRA)
                        expand_rows(&x[0] + n * g.HWC + gi * g.FC * HW, g.H, g.W, g.FC, er, ldr,
                                    g.YH, g.YW + EXTRA, g.FH, 1, -g.PT, g.DY, -g.PL, 0, g.SY, 1,
                                    ja, jb + EXTRA)
                        for v in range(g.FW):
                            gemm_nn(isa, kc, nc, g.Kg, QR, npix, dyt + g.Kg * g.YH * ja, g.Kg,
                                    er + g.YH * v * g.DX, ldr, 0 if first and ja == 0 else 1,
                                    dfc + gi * g.Kg + v * g.K * QR, g.K)
                    for blk in range((g.W + block_cols - 1) // block_cols):
                        if not need_dx:
                            break
                        ja = blk * block_cols
                        jb = min(g.W, ja + block_cols)
                        npix = g.H * (jb - ja)
                        im2col(dyt, ec, &gd, ja, jb + EXTRA)
                        for v in range(g.FW):
                            gemm_nn(isa, kc, nc, g.FC, npix, QC, &fkg[0] + (gi * g.FW + v) * g.FC * QC,
                                    g.FC, ec + QC * g.H * v * g.DX, QC, 0 if v == 0 else 1, dxt, g.FC)
                        transpose_into(dxt, g.FC, npix,
                                       &dx[0] + n * g.HWC + gi * g.FC * HW + g.H * ja, HW)
                first = False
        free(er)
        free(ec)
        free(dyt)
        free(dxt)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the im2row buffers")


def conv_backward_shifted(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_conv_backward_shifted``."""
    float_kind("cnnx._ext.conv.conv_backward_shifted", x)
    return _conv_backward_shifted(x, *args)


cdef void pack_transposed(int isa, const float* a, Py_ssize_t rows, Py_ssize_t cols, float* out) noexcept nogil:
    """a^T (cols x rows) for a (rows x cols, column-major), packed into ``out`` as cnnx_pack_a packs
    A: its panels of MR columns of ``a`` transposed (ld MR) in one pass, zero-padded to MR."""
    cdef int MR, NR
    cdef Py_ssize_t panel, i0, mr, p
    cnnx_tile_of(isa, &MR, &NR)
    for panel in range((cols + MR - 1) // MR):
        i0 = panel * MR
        mr = min(MR, cols - i0)
        cnnx_transpose_f32(a + i0 * rows, rows, rows, mr, out + i0 * rows, MR, NULL, 1)
        if mr < MR:
            for p in range(rows):
                memset(out + i0 * rows + MR * p + mr, 0, (MR - mr) * sizeof(float))


cdef void implicit_back_image(const float* xn, const float* dyn, const float* packed_fkg, const Patches* pt,
                              const Span* filter_rows, Py_ssize_t n_filter_rows, float* dxn,
                              float* dfc, const Geom* g, const Geom* gd, Py_ssize_t gi, Py_ssize_t Hp,
                              Py_ssize_t Wp, Py_ssize_t Hd, Py_ssize_t Wd, float* xtp, float* dtp, float* dyp,
                              float* dxt, bint need_dx, bint need_df, bint skip_df, bint accumulate, int isa,
                              Py_ssize_t kc, Py_ssize_t nc) noexcept nogil:
    """One image and group of _conv_backward_implicit (its B views are local, so thread-private)."""
    cdef cnnx_bview view
    cdef Py_ssize_t HW = g.H * g.W, run = g.FH * g.FC, v, ja, jb, r, ua, ub, ia, ib
    cdef int MR, NR
    if need_df:
        # dF^T (Kg x Q) [+]= dY^T (Kg x pixels) @ Xcol^T: pixels in runs of YH (one output column),
        # taps in groups of FH*FC (one filter column), read in place from the padded image; dY^T
        # packed once. With ``skip_df``, each filter column v over the output columns where it
        # reaches the image, and each run of filter rows [ua, ub) = filter_rows[r].j0, j1 over the
        # output rows [ia, ib) = filter_rows[r].v0, v1 where those reach it.
        pack_transposed(isa, dyn + gi * g.Kg * g.P, g.P, g.Kg, dyp)
        pad_channels_first(xn, g, gi * g.FC, Hp, Wp, xtp)
        view.rs = g.FC * g.SY
        view.run = g.YH
        view.ts = g.FC * Hp * g.SX
        view.cs = 1
        view.group = run
        view.gs = g.FC * Hp * g.DX
        view.askip = 0
        if not skip_df:
            view.b = xtp
            cnnx_gemm(isa, g.Kg, g.Q, g.P, dyp, NULL, g.P, &view, accumulate, dfc + gi * g.Kg, g.K, run * g.K,
                      kc, nc)
        else:
            cnnx_tile_of(isa, &MR, &NR)
            for v in range(g.FW):
                valid_range(v * g.DX - g.PL, g.W, g.SX, g.YW, &ja, &jb)
                for r in range(n_filter_rows):
                    ua, ub, ia, ib = filter_rows[r].j0, filter_rows[r].j1, filter_rows[r].v0, filter_rows[r].v1
                    view.b = xtp + ja * view.ts + v * view.gs + ia * view.rs + ua * g.FC
                    view.run = max(1, ib - ia)
                    view.askip = g.YH - view.run
                    view.group = (ub - ua) * g.FC
                    cnnx_gemm(isa, g.Kg, view.group, (ib - ia) * (jb - ja), dyp + MR * (ia + g.YH * ja), NULL, g.P,
                              &view, accumulate, dfc + gi * g.Kg + (ua + g.FH * v) * g.FC * g.K, g.K,
                              view.group * g.K, kc, nc)
    if need_dx:
        # dX^T (FC x H*W) = flipped F (FC x Kg*FH*FW) @ the im2col of dY, padded and channels
        # first (gd), rectangle by rectangle of dX (make_patches).
        pad_channels_first(dyn, gd, gi * g.Kg, Hd, Wd, dtp)
        view.b = dtp
        view.rs = 1
        view.askip = 0
        view.run = g.FH * g.Kg
        view.ts = g.Kg * Hd * g.DX
        view.cs = g.Kg
        view.group = g.H
        view.gs = g.Kg * Hd
        gemm_patches(isa, g.FC, packed_fkg, pt, view, dxt, kc, nc)
        transpose_into(dxt, g.FC, HW, dxn + gi * g.FC * HW, HW)


def _conv_backward_implicit(const float[::1] x, const float[::1] fkg, const float[::1] dy, float[::1] dx,
                            float[::1] dft_parts, float[::1] db_parts, tuple sizes, bint need_dx,
                            bint need_df, bint need_db, bint skip_dx, bint skip_df, Py_ssize_t n_chunks, int isa,
                            Py_ssize_t kc, Py_ssize_t nc, int n_threads):
    """dX, and per-chunk partial dF^T and dB (float32, stride 1, DY = 1), by implicit GEMM on the
    micro-kernels of ``isa``: no expanded matrix is built; the GEMMs read the padded, channels-first
    image (filter gradient) and dY (data gradient, the correlation of dY with the flipped filters
    ``fkg``, FC x Kg x FH x FW x G, packed once for all images) in place (cnnx_bview).
    ``skip_dx`` and ``skip_df`` (the caller checked that dY is finite): the data and the filter
    gradients skip the products with padding zeros (make_patches; the filter gradient only left and
    right padding, one filter column at a time).

    Chunk c accumulates its images in order into dft_parts[c*K*Q : (c+1)*K*Q], dF^T as a
    K x FC x FH x FW array, and db_parts[c*K : (c+1)*K]; the caller sums the chunks.
    """
    cdef Geom g = make_geom(sizes)
    cdef Geom gd = g
    cdef Py_ssize_t Hp = (g.YH - 1) * g.SY + g.FH, Wp = (g.YW - 1) * g.SX + (g.FW - 1) * g.DX + 1
    cdef Py_ssize_t Hd = g.H - 1 + g.FH, Wd = g.W - 1 + (g.FW - 1) * g.DX + 1
    cdef Py_ssize_t QD = g.Kg * g.FH * g.FW, c, n, gi, k, per_group = 0
    cdef bint first
    cdef list keep = []
    cdef Patches pt
    # The filter gradient's runs of filter rows that reach the same output rows (reach_spans with
    # the filter rows as its outputs).
    cdef Span* filter_rows = <Span*> numpy_buffer(max(1, 2 * g.YH - 1) * sizeof(Span), keep)
    cdef Py_ssize_t n_filter_rows = reach_spans(g.FH, -g.PT, 1, g.H, g.SY, g.YH, True, filter_rows)
    cdef float* packed = NULL
    cdef float* xtp
    cdef float* dtp
    cdef float* dyp
    cdef float* dxt
    cdef float* dfc
    cdef float* dbc
    cdef const float* dyn
    cdef int failed[1]
    # The data gradient's input: dY's Kg channels of YH x YW, padded to reach all of dX's H x W.
    gd.H, gd.W, gd.FC, gd.PT, gd.PL = g.YH, g.YW, g.Kg, g.FH - 1 - g.PT, (g.FW - 1) * g.DX - g.PL
    failed[0] = 0
    if need_dx:
        pt = make_patches(g.H, -gd.PT, 1, g.YH, g.W, -gd.PL, 1, g.YW, g.DX, g.Kg, g.FH, g.FW, skip_dx, keep)
        per_group = pack_patches(isa, g.FC, NULL, g.FC, &pt, NULL)
        packed = <float*> numpy_buffer(g.G * per_group * sizeof(float), keep)
    with nogil:
        if need_dx:
            for gi in range(g.G):
                pack_patches(isa, g.FC, &fkg[0] + gi * g.FC * QD, g.FC, &pt, packed + gi * per_group)
        with parallel(num_threads=n_threads):
            xtp = NULL
            dtp = NULL
            dyp = NULL
            dxt = NULL
            if need_df:
                xtp = <float*> malloc(g.FC * Hp * Wp * sizeof(float))
                dyp = <float*> malloc(cnnx_packed_rows(isa, g.Kg) * g.P * sizeof(float))
                if xtp == NULL or dyp == NULL:
                    failed[0] = 1
            if need_dx:
                dtp = <float*> malloc(g.Kg * Hd * Wd * sizeof(float))
                dxt = <float*> malloc(g.FC * g.H * g.W * sizeof(float))
                if dtp == NULL or dxt == NULL:
                    failed[0] = 1
            for c in prange(n_chunks, schedule="dynamic"):
                if failed[0]:
                    continue
                dfc = &dft_parts[0] + c * g.Q * g.K
                dbc = &db_parts[0] + c * g.K
                first = True
                for n in range(c * g.N // n_chunks, (c + 1) * g.N // n_chunks):
                    dyn = &dy[0] + n * g.P * g.K
                    if need_db:
                        add_bias_derivative(dbc, dyn, g.K, g.P, first)
                    for gi in range(g.G):
                        implicit_back_image(&x[0] + n * g.HWC, dyn, packed + gi * per_group if need_dx else NULL,
                                            &pt, filter_rows, n_filter_rows, &dx[0] + n * g.HWC, dfc, &g, &gd, gi, Hp,
                                            Wp, Hd, Wd, xtp, dtp, dyp, dxt, need_dx, need_df, skip_df, not first,
                                            isa, kc, nc)
                    first = False
            free(xtp)
            free(dtp)
            free(dyp)
            free(dxt)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the implicit GEMM's buffers")


def conv_backward_implicit(x, *args):
    """Check that ``x`` is float32 (the own kernels' type), then run ``_conv_backward_implicit``."""
    _check_float32("conv_backward_implicit", x)
    return _conv_backward_implicit(x, *args)


cdef inline Py_ssize_t part_start(Py_ssize_t part, Py_ssize_t n_parts, Py_ssize_t total) noexcept nogil:
    """First item of block ``part`` when ``total`` items are cut into ``n_parts`` near-equal blocks."""
    return part * total // n_parts


def _fc_forward(const floating[::1] x, const floating[::1] f, const floating[::1] b, floating[::1] y,
                floating[::1] xcol, tuple sizes, bint has_bias, bint direct, Py_ssize_t n_col_parts,
                int n_threads):
    """Y (K x N) = F^T @ Xcol + B for a 1x1 output: a few GEMMs over all images, not one per image.

    direct: the filter covers X exactly (no padding, no dilation), so Xcol is X read as a
    (H*W*C) x N matrix; otherwise im2row first fills xcol, laid out as G blocks of Q x N.
    Images are split into ``n_col_parts`` column blocks (fixed by the caller from N only).
    """
    cdef Geom g = make_geom(sizes)
    cdef Py_ssize_t n, gi, u, n0, n1, ldx, gstride
    cdef const floating* xbase
    cdef floating* yb
    if direct:
        xbase = &x[0]
        ldx = g.HWC
        gstride = g.Q
    else:
        xbase = &xcol[0]
        ldx = g.Q
        gstride = g.Q * g.N
        with nogil:
            for n in prange(g.N, schedule="static", num_threads=n_threads):
                for gi in range(g.G):
                    im2row(&x[0] + n * g.HWC, &xcol[0] + gi * g.Q * g.N + n * g.Q, 1, &g, gi * g.FC)
    with nogil:
        for u in prange(g.G * n_col_parts, schedule="static", num_threads=n_threads):
            gi = u // n_col_parts
            n0 = part_start(u % n_col_parts, n_col_parts, g.N)
            n1 = part_start(u % n_col_parts + 1, n_col_parts, g.N)
            if n1 == n0:
                continue
            yb = &y[0] + n0 * g.K
            gemm(b"T"[0], b"N"[0], g.Kg, n1 - n0, g.Q, 1, &f[0] + gi * g.Kg * g.Q, g.Q,
                 xbase + gi * gstride + n0 * ldx, ldx, 0, yb + gi * g.Kg, g.K)
            if has_bias:
                for n in range(n1 - n0):
                    add_bias(yb + n * g.K, 1, 1, &b[0], gi * g.Kg, (gi + 1) * g.Kg)


def fc_forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_fc_forward``."""
    float_kind("cnnx._ext.conv.fc_forward", x)
    return _fc_forward(x, *args)


def _fc_backward(const floating[::1] x, const floating[::1] f, const floating[::1] dy, floating[::1] dx,
                 floating[::1] df, floating[::1] db, floating[::1] xcol, floating[::1] dxcol,
                 tuple sizes, bint direct, bint need_dx, bint need_df, bint need_db,
                 Py_ssize_t n_col_parts, Py_ssize_t n_row_parts, int n_threads):
    """dX = F @ dY, dF = Xcol @ dY^T and dB = row sums of dY for a 1x1 output (dY is K x N).

    Each element of dF is computed by one GEMM over all images (row blocks of ``n_row_parts``),
    so no partial sums are needed. xcol/dxcol are scratch (G blocks of Q x N) when not direct.
    """
    cdef Geom g = make_geom(sizes)
    cdef Py_ssize_t n, gi, u, k, lo, hi, ldx, gstride
    cdef floating s
    cdef const floating* xbase
    cdef floating* dxbase
    if direct:
        xbase = &x[0]
        dxbase = &dx[0]
        ldx = g.HWC
        gstride = g.Q
    else:
        xbase = &xcol[0]
        dxbase = &dxcol[0]
        ldx = g.Q
        gstride = g.Q * g.N
    with nogil:
        if need_df:
            if not direct:
                for n in prange(g.N, schedule="static", num_threads=n_threads):
                    for gi in range(g.G):
                        im2row(&x[0] + n * g.HWC, &xcol[0] + gi * g.Q * g.N + n * g.Q, 1, &g,
                               gi * g.FC)
            for u in prange(g.G * n_row_parts, schedule="static", num_threads=n_threads):
                gi = u // n_row_parts
                lo = part_start(u % n_row_parts, n_row_parts, g.Q)
                hi = part_start(u % n_row_parts + 1, n_row_parts, g.Q)
                if hi > lo:
                    gemm(b"N"[0], b"T"[0], hi - lo, g.Kg, g.N, 1, xbase + gi * gstride + lo, ldx,
                         &dy[0] + gi * g.Kg, g.K, 0, &df[0] + gi * g.Kg * g.Q + lo, g.Q)
        if need_dx:
            for u in prange(g.G * n_col_parts, schedule="static", num_threads=n_threads):
                gi = u // n_col_parts
                lo = part_start(u % n_col_parts, n_col_parts, g.N)
                hi = part_start(u % n_col_parts + 1, n_col_parts, g.N)
                if hi > lo:
                    gemm(b"N"[0], b"N"[0], g.Q, hi - lo, g.Kg, 1, &f[0] + gi * g.Kg * g.Q, g.Q,
                         &dy[0] + lo * g.K + gi * g.Kg, g.K, 0, dxbase + gi * gstride + lo * ldx, ldx)
            if not direct:
                for n in prange(g.N, schedule="static", num_threads=n_threads):
                    memset(&dx[0] + n * g.HWC, 0, g.HWC * sizeof(floating))
                    for gi in range(g.G):
                        row2im(&dxcol[0] + gi * g.Q * g.N + n * g.Q, 1, &dx[0] + n * g.HWC, &g,
                               gi * g.FC, &dxcol[0] + gi * g.Q * g.N + n * g.Q)
        if need_db:
            for k in range(g.K):
                s = 0
                for n in range(g.N):
                    s = s + dy[k + g.K * n]
                db[k] = s


def fc_backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_fc_backward``."""
    float_kind("cnnx._ext.conv.fc_backward", x)
    return _fc_backward(x, *args)
