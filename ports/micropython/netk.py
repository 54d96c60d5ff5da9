# edgesim twin kernels (MicroPython 1.25; CPython runs them too, in the tests). One float32 array('f')
# loop per op of the host's trace (workloads/layers.py, workloads/job.py): the same layouts (NHWC
# activations; dense W (in, out), conv W (kh, kw, C_in, C_out), depthwise W (kh, kw, C), all row-major),
# the same padding (total pad ph, ph // 2 of it on top), the same buffers: every kernel returns the
# buffers the host's op allocates -- a conv's im2col workspace of two patches, its input-gradient patch
# -- so net.py holds them until the trace frees them. MACs as the host counts them (dense kernels).
# G is the layer's geometry table, g its offset: kind, H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL, RELU.
# B is the batch: buffers hold B samples one after the other; gradients of the weights sum over them.
from array import array
from math import exp, log


ZZ = memoryview(array('f', bytes(1024)))   # 256 zeros to clear new buffers from (copies, no allocation)


def af(n):
    # n float32s at exactly their size (one array header and the items), every one overwritten by the
    # caller: built from a range, so nothing bigger is allocated on the way (bytes(4 * n) would be)
    return array('f', range(n))


def zf(n):
    # n float32 zeros at exactly their size, for buffers the kernel accumulates into
    a = af(n)
    m = memoryview(a)
    for o in range(0, n, 256):
        k = min(256, n - o)
        m[o:o + k] = ZZ[:k]
    return a


def dense(x, w, b, n, m, r, B):
    # y = x @ w + b, w (n, m) row-major; fused ReLU if r
    y = af(B * m)
    o = 0
    for q in range(0, B * n, n):
        for j in range(m):
            s = b[j]
            k = j
            for i in range(q, q + n):
                s += x[i] * w[k]
                k += m
            if r and s < 0:
                s = 0.0
            y[o] = s
            o += 1
    return y


def dense_wg(x, e, n, m, B):
    # dW = x.T @ e, db = e summed over the batch
    d = zf(n * m)
    db = zf(m)
    for q in range(B):
        for j in range(m):
            v = e[q * m + j]
            db[j] += v
            k = j
            for i in range(q * n, q * n + n):
                d[k] += x[i] * v
                k += m
    return d, db


def dense_dx(e, w, n, m, B):
    # dx = e @ w.T
    d = af(B * n)
    o = 0
    for q in range(0, B * m, m):
        k = 0
        for i in range(n):
            s = 0.0
            for j in range(q, q + m):
                s += e[j] * w[k]
                k += 1
            d[o] = s
            o += 1
    return d


def pool(x, G, g, mx, B):
    # max (mx) or average pool, window = stride = KH x KW; a ragged bottom/right edge is dropped
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    y = af(B * OH * OW * C)
    n = KH * KW
    o = 0
    for xo in range(0, B * H * W * C, H * W * C):
        for oh in range(OH):
            for ow in range(OW):
                q0 = xo + (oh * KH * W + ow * KW) * C
                for c in range(C):
                    s = x[q0 + c]
                    if not mx:
                        s = 0.0
                    for i in range(KH):
                        q = q0 + i * W * C + c
                        for j in range(KW):
                            v = x[q]
                            if mx:
                                if v > s:
                                    s = v
                            else:
                                s += v
                            q += C
                    y[o] = s if mx else s / n
                    o += 1
    return y


def maxpool_dx(e, x, y, G, g, B):
    # the gradient goes to the window's maxima; tied maxima share it equally (as the host)
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    dx = zf(B * H * W * C)
    o = 0
    for xo in range(0, B * H * W * C, H * W * C):
        for oh in range(OH):
            for ow in range(OW):
                q0 = xo + (oh * KH * W + ow * KW) * C
                for c in range(C):
                    m = y[o]
                    t = 0
                    for i in range(KH):
                        q = q0 + i * W * C + c
                        for j in range(KW):
                            if x[q] == m:
                                t += 1
                            q += C
                    v = e[o] / t
                    for i in range(KH):
                        q = q0 + i * W * C + c
                        for j in range(KW):
                            if x[q] == m:
                                dx[q] = v
                            q += C
                    o += 1
    return dx


def avgpool_dx(e, G, g, B):
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    dx = zf(B * H * W * C)
    a = 1.0 / (KH * KW)
    o = 0
    for xo in range(0, B * H * W * C, H * W * C):
        for oh in range(OH):
            for ow in range(OW):
                q0 = xo + (oh * KH * W + ow * KW) * C
                for c in range(C):
                    v = e[o] * a
                    o += 1
                    for i in range(KH):
                        q = q0 + i * W * C + c
                        for j in range(KW):
                            dx[q] = v
                            q += C
    return dx


def gap(x, G, g, B):
    # global average pool: (H, W, C) -> (C,) per sample
    C = G[g + 3]
    n = G[g + 1] * G[g + 2]
    y = af(B * C)
    o = 0
    for xo in range(0, B * n * C, n * C):
        for c in range(C):
            s = 0.0
            q = xo + c
            for i in range(n):
                s += x[q]
                q += C
            y[o] = s / n
            o += 1
    return y


def gap_dx(e, G, g, B):
    C = G[g + 3]
    n = G[g + 1] * G[g + 2]
    dx = af(B * n * C)
    q = 0
    for eo in range(0, B * C, C):
        for i in range(n):
            for c in range(eo, eo + C):
                dx[q] = e[c] / n
                q += 1
    return dx


def ce(z, ys, m, B):
    # softmax cross-entropy of a batch: ((p - onehot(y)) / B per sample, the mean loss)
    e = af(B * m)
    a = 1.0 / B
    v = 0.0
    for q in range(B):
        o = q * m
        y = ys[q]
        t = z[o]
        for j in range(o, o + m):
            if z[j] > t:
                t = z[j]
        s = 0.0
        for j in range(o, o + m):
            u = exp(z[j] - t)
            e[j] = u
            s += u
        for j in range(o, o + m):
            e[j] = e[j] / s
        e[o + y] -= 1.0
        if B > 1:
            for j in range(o, o + m):
                e[j] *= a
        v += log(s) - (z[o + y] - t)
    return e, v / B


def relu_back(e, a, m):
    # the fused ReLU's backward, in place: no gradient where the output was clipped
    for j in range(m):
        if a[j] <= 0:
            e[j] = 0.0


def sgd(w, d, v, lr, mu, n):
    # SGD as PyTorch: v = mu * v + d; w -= lr * v (no momentum buffer: w -= lr * d)
    if v is None:
        for k in range(n):
            w[k] -= lr * d[k]
    else:
        for k in range(n):
            t = mu * v[k] + d[k]
            v[k] = t
            w[k] -= lr * t
