# edgesim device-side calibration micro-benchmarks (MicroPython 1.9): time one kernel of mlpk.py on
# synthetic arrays of a given size, the way mlp.py times an op (ticks_us around the call, after a
# gc.collect()). Not the workloads: sizes and data are the host's choice, one op at a time.
import gc
import mlpk as k
from array import array
from time import ticks_us, ticks_diff


def t(c, n, m):
    # c: 0 fwd, 1 dw, 2 dx, 3 upd, 4 dact, 5 ce, 6 copy, 7 empty op; n, m: sizes
    x = array('f', range(1, n + 1))
    g = array('f', range(1, m + 1))
    w = array('f', range(n * m)) if c < 4 else None
    a = None
    gc.collect()
    t0 = ticks_us()
    if c == 0:
        a = k.fwd(x, w, g, n, m, 1)
    elif c == 1:
        a = k.dw(x, g, n, m)
    elif c == 2:
        a = k.dx(g, w, n, m)
    elif c == 3:
        k.upd(w, g, w, g, 0.0, n * m)
    elif c == 4:
        k.dact(x, x, n)
    elif c == 5:
        a = k.ce(x, 0, n)
    elif c == 6:
        a = array('f', x)
    t0 = ticks_diff(ticks_us(), t0)
    a = None
    gc.collect()
    print('@%d %d' % (t0, gc.mem_free()))
