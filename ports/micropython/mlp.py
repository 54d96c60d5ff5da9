# edgesim device-side MLP training step (MicroPython 1.9 on the micro:bit), sent as is and imported
# from the board's file system. float32 array('f') buffers, batch 1, SGD, softmax cross-entropy; the
# ops, their order and the buffers each allocates and frees mirror the host's op trace for
# techniques fused_update (workloads/job.py): a layer's weight gradient lives only until its update.
# Each op is timed with time.ticks_us() (under QEMU -icount shift=0 one microsecond is 1000 guest
# instructions); then, outside the timed window, gc.collect() and gc.mem_alloc() sample the live
# heap before the op's inputs are dropped. srv.py serves the host's lines. Table sizes are protocol.py's
# MLP_MAX_LAYERS (5) and MLP_MAX_OPS (25), written out: importing the protocol module would take ~0.4 KB of
# this 10 KB heap; the host checks a model against them before boot and a test checks they agree.
from array import array
import gc
import mlpk as k
from time import ticks_us, ticks_diff

W = [None] * 5        # per layer: weights (in, out) row-major, like the host
B = [None] * 5        # per layer: biases
A = [None] * 6        # A[0] the input, A[l + 1] the output of layer l
S = []                # layer sizes
XS = None             # the sample as received (staging: the serial line's buffer)
LR = 0.05
TK = array('H', range(25))   # per-op microseconds of the last step
MA = array('H', range(25))   # per-op live heap bytes, sampled after the op
N = 0                 # ops recorded in this step


def setup(z, lr):
    # the model: weights and biases per layer, and the sample buffer
    global XS, LR
    LR = lr
    while S:
        S.pop()
    for s in z:
        S.append(s)
    XS = array('f', range(z[0]))
    for l in range(len(z) - 1):
        W[l] = array('f', range(z[l] * z[l + 1]))
        B[l] = array('f', range(z[l + 1]))


def rec(t0):
    global N
    TK[N] = ticks_diff(ticks_us(), t0)
    gc.collect()
    MA[N] = gc.mem_alloc()
    N += 1


def step(y):
    # one training step on XS with label y; returns the loss; TK/MA hold its N ops
    global N
    N = 0
    n = len(S) - 1
    t0 = ticks_us()
    A[0] = array('f', XS)
    rec(t0)
    for l in range(n):
        t0 = ticks_us()
        A[l + 1] = k.fwd(A[l], W[l], B[l], S[l], S[l + 1], l < n - 1)
        rec(t0)
    t0 = ticks_us()
    g, v = k.ce(A[n], y, S[n])
    rec(t0)
    A[n] = None
    for l in range(n - 1, -1, -1):
        m = S[l + 1]
        if l < n - 1:
            t0 = ticks_us()
            k.dact(g, A[l + 1], m)
            rec(t0)
            A[l + 1] = None
        t0 = ticks_us()
        d, e = k.dw(A[l], g, S[l], m)
        rec(t0)
        if l:
            t0 = ticks_us()
            h = k.dx(g, W[l], S[l], m)
            rec(t0)
            g = h
            h = None
        else:
            A[0] = None
            g = None
        t0 = ticks_us()
        k.upd(W[l], B[l], d, e, LR, S[l] * m)
        rec(t0)
        d = e = None
    return v
