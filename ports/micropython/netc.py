# edgesim twin convolution kernels (MicroPython 1.25; CPython runs them too, in the tests): conv2d by
# im2col one patch at a time in the two-patch workspace the host's trace allocates, and depthwise
# convolution computed directly (no workspace). Sent after netk.py into the same namespace (af, zf);
# a file of its own so each file compiles in a small part of a small twin's heap. Layouts, padding and
# the geometry table G as in netk.py.


def patch(x, xo, p, oh, ow, G, g):
    # im2col: the window of output position (oh, ow) of the sample at x[xo:] into p (zeros where it
    # hangs over the padding)
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    f = 0
    for i in range(G[g + 7]):
        h = oh * G[g + 9] + i - G[g + 11]
        for j in range(G[g + 8]):
            v = ow * G[g + 10] + j - G[g + 12]
            if 0 <= h < H and 0 <= v < W:
                q = xo + (h * W + v) * C
                for c in range(C):
                    p[f] = x[q + c]
                    f += 1
            else:
                for c in range(C):
                    p[f] = 0.0
                    f += 1


def conv(x, w, b, G, g, B):
    # y = relu?(im2col(x) @ w + b), one patch at a time in a two-patch workspace
    OH = G[g + 4]
    OW = G[g + 5]
    CO = G[g + 6]
    F = G[g + 7] * G[g + 8] * G[g + 3]
    N = G[g + 1] * G[g + 2] * G[g + 3]
    r = G[g + 13]
    p = af(2 * F)
    y = af(B * OH * OW * CO)
    o = 0
    for xo in range(0, B * N, N):
        for oh in range(OH):
            for ow in range(OW):
                patch(x, xo, p, oh, ow, G, g)
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


def conv_wg(x, e, G, g, B):
    # dW = im2col(x).T @ e, db = e summed over positions and samples
    OH = G[g + 4]
    OW = G[g + 5]
    CO = G[g + 6]
    F = G[g + 7] * G[g + 8] * G[g + 3]
    N = G[g + 1] * G[g + 2] * G[g + 3]
    d = zf(F * CO)
    db = zf(CO)
    p = af(2 * F)
    o = 0
    for xo in range(0, B * N, N):
        for oh in range(OH):
            for ow in range(OW):
                patch(x, xo, p, oh, ow, G, g)
                for co in range(CO):
                    v = e[o]
                    o += 1
                    db[co] += v
                    k = co
                    for f in range(F):
                        d[k] += p[f] * v
                        k += CO
    return d, db, p


def conv_dx(e, w, G, g, B):
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
    N = H * W * C
    dx = zf(B * N)
    p = af(F)
    o = 0
    for xo in range(0, B * N, N):
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
                            q = xo + (h * W + v) * C
                            for c in range(C):
                                dx[q + c] += p[f]
                                f += 1
                        else:
                            f += C
    return dx, p


def dw(x, w, b, G, g, B):
    # depthwise: one KH x KW filter per channel
    H = G[g + 1]
    W = G[g + 2]
    C = G[g + 3]
    OH = G[g + 4]
    OW = G[g + 5]
    KH = G[g + 7]
    KW = G[g + 8]
    r = G[g + 13]
    y = af(B * OH * OW * C)
    o = 0
    for xo in range(0, B * H * W * C, H * W * C):
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
                                    s += x[xo + (h * W + v) * C + c] * w[(i * KW + j) * C + c]
                    if r and s < 0:
                        s = 0.0
                    y[o] = s
                    o += 1
    return y


def dw_wg(x, e, G, g, B):
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
    for xo in range(0, B * H * W * C, H * W * C):
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
                                    d[(i * KW + j) * C + c] += x[xo + (h * W + u) * C + c] * v
    return d, db


def dw_dx(e, w, G, g, B):
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
                for c in range(C):
                    v = e[o]
                    o += 1
                    for i in range(KH):
                        h = oh * G[g + 9] + i - G[g + 11]
                        if 0 <= h < H:
                            for j in range(KW):
                                u = ow * G[g + 10] + j - G[g + 12]
                                if 0 <= u < W:
                                    dx[xo + (h * W + u) * C + c] += v * w[(i * KW + j) * C + c]
    return dx
