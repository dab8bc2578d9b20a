"""Convolution kernels for vl_nnconv: im2row + GEMM, OpenMP over images, one fused float type.

Layout (MatConvNet's): X is H x W x C x N and F is FH x FW x FC x K, both Fortran-ordered. For one
image and one group, im2row builds the P x Q column-major matrix Xrow (P = YH*YW output pixels,
Q = FH*FW*FC filter taps), so that F read as a Q x K matrix gives Y_n = Xrow @ F (P x K) directly.
Several images may share one GEMM ("batch"): their Xrow blocks are stacked along P.

Every function takes the geometry as a tuple checked by cnnx/conv.py:
(H, W, C, N, FH, FW, FC, K, YH, YW, SY, SX, PT, PL, DY, DX).
The caller runs these kernels inside ``blas_single_threaded()``: BLAS runs inside our threads.
Reductions over images (filter and bias gradients) go through per-chunk partial buffers whose
chunking depends on the problem size only, so results do not depend on the thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from .blas cimport gemm


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


cdef inline void im2row(const floating* x, floating* xrow, Py_ssize_t ld, const Geom* g,
                        Py_ssize_t c0) noexcept nogil:
    """Xrow[p, q] = xpad of one image for channels c0 .. c0+FC-1, stored at xrow[p + ld*q].

    p = i + YH*j is the output pixel and q = u + FH*(v + FW*c) the filter tap; padding reads 0.
    """
    cdef Py_ssize_t c, u, v, i, j, i0, i1, j0, j1, ioff, joff, src
    cdef Py_ssize_t YH = g.YH, H = g.H, SY = g.SY
    cdef const floating* xc
    cdef floating* col
    cdef floating* dst
    for c in range(g.FC):
        xc = x + (c0 + c) * g.H * g.W
        for v in range(g.FW):
            joff = v * g.DX - g.PL
            valid_range(joff, g.W, g.SX, g.YW, &j0, &j1)
            for u in range(g.FH):
                ioff = u * g.DY - g.PT
                valid_range(ioff, H, SY, YH, &i0, &i1)
                col = xrow + ld * (u + g.FH * (v + g.FW * c))
                memset(col, 0, j0 * YH * sizeof(floating))
                memset(col + j1 * YH, 0, (g.YW - j1) * YH * sizeof(floating))
                for j in range(j0, j1):
                    dst = col + j * YH
                    src = (j * g.SX + joff) * H + ioff
                    # Short runs (a few to a few dozen pixels): plain loops beat memcpy/memset calls.
                    for i in range(i0):
                        dst[i] = 0
                    if SY == 1:
                        for i in range(i0, i1):
                            dst[i] = xc[src + i]
                    else:
                        for i in range(i0, i1):
                            dst[i] = xc[src + i * SY]
                    for i in range(i1, YH):
                        dst[i] = 0


cdef inline void im2col(const floating* x, floating* xcol, const Geom* g, Py_ssize_t c0) noexcept nogil:
    """Xcol[q, p] = xpad of one image for channels c0 .. c0+FC-1, stored at xcol[q + Q*p].

    The transpose of im2row's matrix: each output pixel's patch is contiguous, which the forward
    GEMM Y^T = F^T @ Xcol runs faster on than Y = Xrow @ F (few filters, long inner dimension).
    """
    cdef Py_ssize_t i, j, c, u, v, u0, u1, v0, v1, ioff, joff, src
    cdef Py_ssize_t FH = g.FH, DY = g.DY
    cdef const floating* xc
    cdef floating* dst
    for j in range(g.YW):
        joff = j * g.SX - g.PL
        valid_range(joff, g.W, g.DX, g.FW, &v0, &v1)
        for i in range(g.YH):
            ioff = i * g.SY - g.PT
            valid_range(ioff, g.H, DY, FH, &u0, &u1)
            dst = xcol + g.Q * (i + g.YH * j)
            if u0 == 0 and u1 == FH and v0 == 0 and v1 == g.FW and DY == 1:
                # Interior pixel, undilated rows: FW runs of FH contiguous values per channel.
                for c in range(g.FC):
                    src = (c0 + c) * g.H * g.W + joff * g.H + ioff
                    for v in range(g.FW):
                        for u in range(FH):
                            dst[u] = x[src + u]
                        src += g.DX * g.H
                        dst += FH
                continue
            for c in range(g.FC):
                xc = x + (c0 + c) * g.H * g.W
                memset(dst, 0, v0 * FH * sizeof(floating))
                for v in range(v0, v1):
                    src = (joff + v * g.DX) * g.H + ioff
                    for u in range(u0):
                        dst[v * FH + u] = 0
                    for u in range(u0, u1):
                        dst[v * FH + u] = xc[src + u * DY]
                    for u in range(u1, FH):
                        dst[v * FH + u] = 0
                memset(dst + v1 * FH, 0, (g.FW - v1) * FH * sizeof(floating))
                dst += FH * g.FW


cdef inline void row2im(const floating* dxrow, Py_ssize_t ld, floating* dx, const Geom* g,
                        Py_ssize_t c0) noexcept nogil:
    """The adjoint of im2row: add dXrow[p, q] into dx; entries landing in the padding are dropped."""
    cdef Py_ssize_t c, u, v, i, j, i0, i1, j0, j1, ioff, joff, dst
    cdef Py_ssize_t YH = g.YH, H = g.H, SY = g.SY
    cdef floating* dxc
    cdef const floating* col
    for c in range(g.FC):
        dxc = dx + (c0 + c) * g.H * g.W
        for v in range(g.FW):
            joff = v * g.DX - g.PL
            valid_range(joff, g.W, g.SX, g.YW, &j0, &j1)
            for u in range(g.FH):
                ioff = u * g.DY - g.PT
                valid_range(ioff, H, SY, YH, &i0, &i1)
                col = dxrow + ld * (u + g.FH * (v + g.FW * c))
                for j in range(j0, j1):
                    dst = (j * g.SX + joff) * H + ioff
                    if SY == 1:
                        for i in range(i0, i1):
                            dxc[dst + i] += col[j * YH + i]
                    else:
                        for i in range(i0, i1):
                            dxc[dst + i * SY] += col[j * YH + i]


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


def conv_forward(floating[::1] x, floating[::1] f, floating[::1] b, floating[::1] y, tuple sizes,
                 bint identity, bint has_bias, bint direct, bint patch_major, Py_ssize_t batch,
                 int n_threads):
    """Y = X (*) F + B for all images, ``batch`` images per GEMM, in parallel over batches.

    identity: F is the identity bank (geometry with FH = FW = 1, FC = K = C): Y is im2row itself.
    direct: 1x1 filters, stride 1, no padding: X_n is already Xrow, Y_n = X_n @ F with no copy
    (batch must be 1). patch_major: Y^T = F^T @ Xcol over the im2col matrix (each patch
    contiguous), else Y = Xrow @ F over the im2row matrix (each tap contiguous).
    """
    cdef Geom g = make_geom(sizes)
    cdef Py_ssize_t n_batches = (g.N + batch - 1) // batch
    cdef Py_ssize_t t, n0, nn, M, gi, bb, k
    cdef floating* buf
    cdef floating* yt
    cdef floating* yn
    cdef int failed[1]
    failed[0] = 0
    with nogil, parallel(num_threads=n_threads):
        buf = NULL
        yt = NULL
        if not identity and not direct:
            buf = <floating*> malloc(batch * g.P * g.Q * sizeof(floating))
            yt = <floating*> malloc(batch * g.P * g.K * sizeof(floating))
            if buf == NULL or yt == NULL:
                failed[0] = 1
        for t in prange(n_batches, schedule="static"):
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
                    gemm(b"N"[0], b"N"[0], g.P, g.Kg, g.Q, 1, &x[0] + n0 * g.HWC + gi * g.FC * g.P,
                         g.P, &f[0] + gi * g.Kg * g.Q, g.Q, 0, yn + gi * g.Kg * g.P, g.P)
                if has_bias:
                    add_bias(yn, g.P, g.P, &b[0], 0, g.K)
            elif patch_major:
                # Y^T (K x M) = F^T @ Xcol per group, then transposed image by image into Y.
                for gi in range(g.G):
                    for bb in range(nn):
                        im2col(&x[0] + (n0 + bb) * g.HWC, buf + bb * g.P * g.Q, &g, gi * g.FC)
                    gemm(b"T"[0], b"N"[0], g.Kg, M, g.Q, 1, &f[0] + gi * g.Kg * g.Q, g.Q, buf, g.Q,
                         0, yt + gi * g.Kg, g.K)
                for bb in range(nn):
                    yn = &y[0] + (n0 + bb) * g.P * g.K
                    transpose_into(yt + bb * g.P * g.K, g.K, g.P, yn, g.P)
                    if has_bias:
                        add_bias(yn, g.P, g.P, &b[0], 0, g.K)
            else:
                # Y (M x K) = Xrow @ F per group; with several images, M stacks their pixels and
                # the result is copied out image by image.
                for gi in range(g.G):
                    for bb in range(nn):
                        im2row(&x[0] + (n0 + bb) * g.HWC, buf + bb * g.P, M, &g, gi * g.FC)
                    if nn == 1:
                        gemm(b"N"[0], b"N"[0], M, g.Kg, g.Q, 1, buf, M, &f[0] + gi * g.Kg * g.Q, g.Q,
                             0, &y[0] + n0 * g.P * g.K + gi * g.Kg * g.P, g.P)
                    else:
                        gemm(b"N"[0], b"N"[0], M, g.Kg, g.Q, 1, buf, M, &f[0] + gi * g.Kg * g.Q, g.Q,
                             0, yt + gi * g.Kg * M, M)
                for bb in range(nn):
                    yn = &y[0] + (n0 + bb) * g.P * g.K
                    if nn > 1:
                        for k in range(g.K):
                            memcpy(yn + k * g.P, yt + bb * g.P + k * M, g.P * sizeof(floating))
                    if has_bias:
                        add_bias(yn, g.P, g.P, &b[0], 0, g.K)
        free(buf)
        free(yt)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the im2row buffers")


cdef inline void transpose_into(const floating* a, Py_ssize_t rows, Py_ssize_t cols, floating* t,
                                Py_ssize_t ldt) noexcept nogil:
    """t[c + ldt*r] = a[r + rows*c]: the rows x cols matrix a, transposed into t (ld ldt)."""
    cdef Py_ssize_t r, c, r0, c0, r1, c1
    # 16 x 16 tiles: both the reads of a and the writes of t stay within a few cache lines.
    for c0 in range(0, cols, 16):
        c1 = min(cols, c0 + 16)
        for r0 in range(0, rows, 16):
            r1 = min(rows, r0 + 16)
            for r in range(r0, r1):
                for c in range(c0, c1):
                    t[c + ldt * r] = a[r + rows * c]


def conv_backward(floating[::1] x, floating[::1] ft, floating[::1] dy, floating[::1] dx,
                  floating[::1] dft_parts, floating[::1] db_parts, tuple sizes, bint identity,
                  bint direct, bint need_dx, bint need_df, bint need_db, Py_ssize_t batch,
                  Py_ssize_t n_chunks, int n_threads):
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
        for c in prange(n_chunks, schedule="static"):
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
                        row2im(&dy[0] + n0 * g.P * g.K, g.P, &dx[0] + n0 * g.HWC, &g, 0)
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
                        gemm(b"N"[0], b"N"[0], g.Kg, g.Q, M, 1, dyt + gi * g.Kg, g.K, a, M,
                             0 if first else 1, dfc + gi * g.Kg, g.K)
                    if need_dx:
                        if direct:
                            gemm(b"T"[0], b"N"[0], g.P, g.Q, g.Kg, 1, dyt + gi * g.Kg, g.K,
                                 &ft[0] + gi * g.Kg, g.K, 0, &dx[0] + n0 * g.HWC + gi * g.FC * g.P, g.P)
                        else:
                            gemm(b"T"[0], b"N"[0], M, g.Q, g.Kg, 1, dyt + gi * g.Kg, g.K,
                                 &ft[0] + gi * g.Kg, g.K, 0, dxrow, M)
                            for bb in range(nn):
                                row2im(dxrow + bb * g.P, M, &dx[0] + (n0 + bb) * g.HWC, &g, gi * g.FC)
                first = False
        free(xrow)
        free(dxrow)
        free(dyt)
    if failed[0]:
        raise MemoryError("vl_nnconv: cannot allocate the im2row buffers")


cdef inline Py_ssize_t part_start(Py_ssize_t part, Py_ssize_t n_parts, Py_ssize_t total) noexcept nogil:
    """First item of block ``part`` when ``total`` items are cut into ``n_parts`` near-equal blocks."""
    return part * total // n_parts


def fc_forward(floating[::1] x, floating[::1] f, floating[::1] b, floating[::1] y,
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


def fc_backward(floating[::1] x, floating[::1] f, floating[::1] dy, floating[::1] dx,
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
                               gi * g.FC)
        if need_db:
            for k in range(g.K):
                s = 0
                for n in range(g.N):
                    s = s + dy[k + g.K * n]
                db[k] = s
