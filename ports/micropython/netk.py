# edgesim twin kernels (MicroPython 1.25; CPython runs them too, in the tests). One float32 array('f')
# loop per op of the host's trace (workloads/layers.py, workloads/job.py): the same layouts (NHWC
# activations; dense W (in, out), conv W (kh, kw, C_in, C_out), depthwise W (kh, kw, C), all row-major),
# the same padding (total pad ph, ph // 2 of it on top), the same buffers: every kernel returns the
# buffers the host's op allocates -- a conv's im2col workspace of two patches, its input-gradient patch
# -- so net.py holds them until the trace frees them. MACs as the host counts them (dense kernels).
# G is the layer's geometry table, g its offset: kind, H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL, RELU.
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


def dense(x, w, b, n, m, r):
    # y = x @ w + b, w (n, m) row-major; fused ReLU if r
    y = af(m)
    for j in range(m):
        s = b[j]
        k = j
        for i in range(n):
            s += x[i] * w[k]
            k += m
        if r and s < 0:
            s = 0.0
        y[j] = s
    return y


def dense_wg(x, e, n, m):
    # dW = outer(x, e), db = e
    d = af(n * m)
    for j in range(m):
        v = e[j]
        k = j
        for i in range(n):
            d[k] = x[i] * v
            k += m
    return d, array('f', e)


def dense_dx(e, w, n, m):
    # dx = e @ w.T
    d = af(n)
    k = 0
    for i in range(n):
        s = 0.0
        for j in range(m):
            s += e[j] * w[k]
            k += 1
        d[i] = s
    return d


def patch(x, p, oh, ow, G, g):
    # im2col: the input window of output position (oh, ow) into p (zeros where it hangs over the padding)
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    f = 0
    for i in range(G[g + 7]):
        h = oh * G[g + 9] + i - G[g + 11]
        for j in range(G[g + 8]):
            v = ow * G[g + 10] + j - G[g + 12]
            if 0 <= h < H and 0 <= v < W:
                q = (h * W + v) * C
                for c in range(C):
                    p[f] = x[q + c]
                    f += 1
            else:
                for c in range(C):
                    p[f] = 0.0
                    f += 1


def conv(x, w, b, G, g):
    # y = relu?(im2col(x) @ w + b), one patch at a time in a two-patch workspace
    OH = G[g + 4]
    OW = G[g + 5]
    CO = G[g + 6]
    F = G[g + 7] * G[g + 8] * G[g + 3]
    r = G[g + 13]
    p = af(2 * F)
    y = af(OH * OW * CO)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            patch(x, p, oh, ow, G, g)
            for co in range(CO):
                s = b[co]
                k = co
                for f in range(F):
                    s += p[f] * w[k]
                    k += CO
                if r and s < 0:
                    s = 0.0
                y[o] = s
                o += 1
    return y, p


def conv_wg(x, e, G, g):
    # dW = im2col(x).T @ e, db = sum of e over positions
    OH = G[g + 4]
    OW = G[g + 5]
    CO = G[g + 6]
    F = G[g + 7] * G[g + 8] * G[g + 3]
    d = zf(F * CO)
    db = zf(CO)
    p = af(2 * F)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            patch(x, p, oh, ow, G, g)
            for co in range(CO):
                v = e[o]
                o += 1
                db[co] += v
                k = co
                for f in range(F):
                    d[k] += p[f] * v
                    k += CO
    return d, db, p


def conv_dx(e, w, G, g):
    # dx = col2im(e @ w.T): one patch gradient at a time, scattered back onto the input
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    CO = G[g + 6]
    KH = G[g + 7]
    KW = G[g + 8]
    F = KH * KW * C
    dx = zf(H * W * C)
    p = af(F)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            k = 0
            for f in range(F):
                s = 0.0
                for co in range(CO):
                    s += e[o + co] * w[k]
                    k += 1
                p[f] = s
            o += CO
            f = 0
            for i in range(KH):
                h = oh * G[g + 9] + i - G[g + 11]
                for j in range(KW):
                    v = ow * G[g + 10] + j - G[g + 12]
                    if 0 <= h < H and 0 <= v < W:
                        q = (h * W + v) * C
                        for c in range(C):
                            dx[q + c] += p[f]
                            f += 1
                    else:
                        f += C
    return dx, p


def dw(x, w, b, G, g):
    # depthwise: one KH x KW filter per channel
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    r = G[g + 13]
    y = af(OH * OW * C)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            for c in range(C):
                s = b[c]
                for i in range(KH):
                    h = oh * G[g + 9] + i - G[g + 11]
                    if 0 <= h < H:
                        for j in range(KW):
                            v = ow * G[g + 10] + j - G[g + 12]
                            if 0 <= v < W:
                                s += x[(h * W + v) * C + c] * w[(i * KW + j) * C + c]
                if r and s < 0:
                    s = 0.0
                y[o] = s
                o += 1
    return y


def dw_wg(x, e, G, g):
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    d = zf(KH * KW * C)
    db = zf(C)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            for c in range(C):
                v = e[o]
                o += 1
                db[c] += v
                for i in range(KH):
                    h = oh * G[g + 9] + i - G[g + 11]
                    if 0 <= h < H:
                        for j in range(KW):
                            u = ow * G[g + 10] + j - G[g + 12]
                            if 0 <= u < W:
                                d[(i * KW + j) * C + c] += x[(h * W + u) * C + c] * v
    return d, db


def dw_dx(e, w, G, g):
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    dx = zf(H * W * C)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            for c in range(C):
                v = e[o]
                o += 1
                for i in range(KH):
                    h = oh * G[g + 9] + i - G[g + 11]
                    if 0 <= h < H:
                        for j in range(KW):
                            u = ow * G[g + 10] + j - G[g + 12]
                            if 0 <= u < W:
                                dx[(h * W + u) * C + c] += v * w[(i * KW + j) * C + c]
    return dx


def pool(x, G, g, mx):
    # max (mx) or average pool, window = stride = KH x KW; a ragged bottom/right edge is dropped
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    y = af(OH * OW * C)
    n = KH * KW
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            q0 = (oh * KH * W + ow * KW) * C
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


def maxpool_dx(e, x, y, G, g):
    # the gradient goes to the window's maxima; tied maxima share it equally (as the host)
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    dx = zf(H * W * C)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            q0 = (oh * KH * W + ow * KW) * C
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


def avgpool_dx(e, G, g):
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    dx = zf(H * W * C)
    a = 1.0 / (KH * KW)
    o = 0
    for oh in range(OH):
        for ow in range(OW):
            q0 = (oh * KH * W + ow * KW) * C
            for c in range(C):
                v = e[o] * a
                o += 1
                for i in range(KH):
                    q = q0 + i * W * C + c
                    for j in range(KW):
                        dx[q] = v
                        q += C
    return dx


def gap(x, G, g):
    # global average pool: (H, W, C) -> (C,)
    C = G[g + 3]
    n = G[g + 1] * G[g + 2]
    y = af(C)
    for c in range(C):
        s = 0.0
        q = c
        for i in range(n):
            s += x[q]
            q += C
        y[c] = s / n
    return y


def gap_dx(e, G, g):
    C = G[g + 3]
    n = G[g + 1] * G[g + 2]
    dx = af(n * C)
    q = 0
    for i in range(n):
        for c in range(C):
            dx[q] = e[c] / n
            q += 1
    return dx


def ce(z, y, m):
    # softmax cross-entropy of one sample: (p - onehot(y), loss)
    t = z[0]
    for j in range(m):
        if z[j] > t:
            t = z[j]
    e = af(m)
    s = 0.0
    for j in range(m):
        v = exp(z[j] - t)
        e[j] = v
        s += v
    for j in range(m):
        e[j] = e[j] / s
    e[y] -= 1.0
    return e, log(s) - (z[y] - t)


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
