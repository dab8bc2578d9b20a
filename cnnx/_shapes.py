"""Sizes shared by the blocks and the network definitions."""


def window_output_size(height, width, window, pad=(0, 0, 0, 0), stride=(1, 1), dilate=(1, 1)):
    """Output size of a sliding window (convolution or pooling), MatConvNet's floor formula.

    ``YH = floor((height + PT + PB - EH) / SY) + 1`` with the window's extent
    ``EH = (FH - 1) * DY + 1``, and likewise ``YW`` from ``width``, PL, PR, FW, SX and DX: the
    number of window positions that fit the padded input, never rounded up (an asymmetric pad
    such as ``[0 1 0 1]`` gives Caffe's rounded-up sizes).

    Parameters
    ----------
    height, width : int
        Input size H x W (without padding), each >= 0.
    window : (FH, FW)
        Window size: filter taps for ``vl_nnconv``, the pool size for ``vl_nnpool``, each >= 1.
    pad : (PT, PB, LEFT, RIGHT)
        Zero padding top, bottom, left, right, each >= 0 (MatConvNet's ``[T B L R]``).
    stride : (SY, SX)
        Step between windows, each >= 1.
    dilate : (DY, DX)
        Spacing of the window's taps, each >= 1 (1 for pooling).

    Returns
    -------
    (YH, YW) : tuple of int
        The output size. A dimension in which the window (its extent) is larger than the padded
        input gives 0: no window fits. The caller decides whether that is an error.

    Examples
    --------
    >>> window_output_size(5, 5, (3, 3), pad=(1, 1, 1, 1), stride=(2, 2))
    (3, 3)
    >>> window_output_size(4, 4, (3, 3), pad=(0, 1, 0, 1), stride=(2, 2))
    (2, 2)
    >>> window_output_size(5, 7, (3, 3), dilate=(2, 3))
    (1, 1)
    >>> window_output_size(2, 2, (3, 3))
    (0, 0)
    """
    pt, pb, pl, pr = pad
    sy, sx = stride
    dy, dx = dilate
    fh, fw = window
    ext_y = (fh - 1) * dy + 1
    ext_x = (fw - 1) * dx + 1
    span_y = height + pt + pb - ext_y
    span_x = width + pl + pr - ext_x
    return (span_y // sy + 1 if span_y >= 0 else 0, span_x // sx + 1 if span_x >= 0 else 0)
