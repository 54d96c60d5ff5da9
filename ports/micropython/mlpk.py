# edgesim device-side kernels (MicroPython 1.9): one float32 array('f') loop per op of the host's
# trace (workloads: Dense forward, softmax cross-entropy, backward_act/_weight/_input, update).
# MACs follow the host's count for dense kernels (no technique prunes the error here).
# Shared by the training (mlp.py) and the calibration micro-benchmarks (bench.py). New buffers are
# array('f', range(n)): n floats at exactly their size (range has a length, so no over-allocation).
from array import array
from math import exp, log


def fwd(x, w, b, n, m, r):
    # z = x @ w + b, w (n, m) row-major, fused ReLU if r
    z = array('f', range(m))
    for j in range(m):
        s = b[j]
        k = j
        for i in range(n):
            s += x[i] * w[k]
            k += m
        if r and s < 0:
            s = 0.0
        z[j] = s
    return z


def ce(z, y, m):
    # softmax cross-entropy of one sample: (p - onehot(y), loss)
    t = z[0]
    for j in range(m):
        if z[j] > t:
            t = z[j]
    g = array('f', range(m))
    e = 0.0
    for j in range(m):
        v = exp(z[j] - t)
        g[j] = v
        e += v
    for j in range(m):
        g[j] = g[j] / e
    g[y] -= 1.0
    return g, log(e) - (z[y] - t)


def dact(d, a, m):
    # the fused ReLU's backward, in place: no gradient where the output was clipped
    for j in range(m):
        if a[j] <= 0:
            d[j] = 0.0


def dw(x, g, n, m):
    # dW = outer(x, g), db = g (dense: every entry, as the host counts it)
    d = array('f', range(n * m))
    for j in range(m):
        v = g[j]
        k = j
        for i in range(n):
            d[k] = x[i] * v
            k += m
    return d, array('f', g)


def dx(g, w, n, m):
    # dx = g @ w.T (dense)
    d = array('f', range(n))
    for i in range(n):
        d[i] = 0.0
    for j in range(m):
        v = g[j]
        k = j
        for i in range(n):
            d[i] += v * w[k]
            k += m
    return d


def upd(w, b, d, e, lr, n):
    # SGD: w -= lr * dW (n weights), b -= lr * db
    for k in range(n):
        w[k] -= lr * d[k]
    for k in range(len(b)):
        b[k] -= lr * e[k]
