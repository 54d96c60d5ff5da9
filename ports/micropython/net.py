# edgesim twin network port (MicroPython 1.25): a training step is a program the host builds from its
# own op trace (ports/program.py): one row per op -- code, layer, three input and three output buffer
# slots -- and the slots to release after it, where the host's liveness pass frees them. So the board
# allocates and drops the same buffers at the same ops as the host's trace, for any model the spec
# grammar accepts. Sent as it is after protocol.py and netk.py, into the same namespace (the twins have
# no writable file system). Every table has its protocol size from the start: the port's own heap does
# not depend on the model.
# Per op, each on a collected heap: guest time from the machine's timer (mem32; the host turns ticks
# into instructions), the bytes allocated during the op (its buffers and its garbage: boxed floats),
# then, outside the timed window, gc.collect() and gc.mem_alloc() before the op's last-use buffers go.
# Commands (each answers one line): setup(), pw()/px() verified float pieces, s(q, y) one step.
import gc
from array import array
from binascii import unhexlify
from machine import mem32

NG = array('h', bytes(2 * NET_MAX_LAYERS * NET_GEOM))       # layer geometry (netk.py's G)
NP = array('h', bytes(2 * NET_MAX_OPS * 8))                  # program rows: code, layer, i1 i2 i3, o1 o2 o3
NF = array('h', bytes(2 * (NET_MAX_OPS + 1)))                # frees of op n: NL[NF[n]:NF[n + 1]]
NL = array('h', bytes(2 * NET_MAX_FREES))
NX = 0x4000                                                  # NP, NF, NL hold each entry ^ NX, TK ~ticks: the
                                                             # collector reads every word of a live array as a
                                                             # possible pointer, and two small entries (0, 4)
                                                             # make 0x40000, an address in the heap: what sat
                                                             # there (a float of an op's garbage) stayed alive
                                                             # and split the largest hole; with bit 14 or 15
                                                             # set in each half no word points into the heap
NS = [None] * NET_MAX_SLOTS                                  # the step's buffers
WT = [None] * NET_MAX_LAYERS                                 # weights, biases, momentum buffers
BS = [None] * NET_MAX_LAYERS
VW = [None] * NET_MAX_LAYERS
VB = [None] * NET_MAX_LAYERS
TK = array('i', bytes(4 * NET_MAX_OPS))                      # per-op timer ticks of the last step
MA = array('i', bytes(4 * NET_MAX_OPS))                      # per-op live heap bytes, after the op
GA = array('i', bytes(4 * NET_MAX_OPS))                      # per-op bytes allocated during the op (garbage
                                                             # included; exact when no collection ran in it)
LV = array('f', bytes(4))                                    # the step's loss
NV = array('i', bytes(4 * 8))                                # ops, layers, inputs, timer counts down, timer period
TA = 0                                                       # the timer's count register (an int kept once:
TW = ()                                                      # no allocation per read); its restart writes
XS = None                                                    # the sample as received (staging)
LR = 0.0
MU = 0.0
NB = 1                                                       # batch
NQ = -1                                                      # last step answered
NR = ''                                                      # its answer
NT = -1                                                      # last step started


def nck(h):
    s = 0
    for c in h:
        s = (s * 31 + ord(c)) & 0xffff
    return s


def mem():
    gc.collect()
    return gc.mem_alloc()


def now():
    return mem32[TA]


def ticks(a, b):
    # timer ticks from reading a to reading b
    return ((a - b) if NV[3] else (b - a)) % NV[4]


def clk0():
    for a, v in TW:
        mem32[a] = v


def setup(geo, prog, frees, nin, nb, lr, mu, clk):
    # the model (geometry), the step program and its frees, the sample size and batch, SGD, the timer
    global XS, LR, MU, NQ, NT, TA, TW, NB
    LR = lr
    MU = mu
    NQ = NT = -1
    XS = None
    for i in range(NET_MAX_LAYERS):                          # a previous model's buffers go first
        WT[i] = BS[i] = VW[i] = VB[i] = None
    for i in range(NET_MAX_SLOTS):
        NS[i] = None
    for i in range(len(geo)):
        NG[i] = geo[i]
    for i in range(len(prog)):
        NP[i] = prog[i] ^ NX
    NV[0] = len(prog) // 8
    o = 0
    for n in range(len(frees)):
        NF[n] = o ^ NX
        for s in frees[n]:
            NL[o] = s ^ NX
            o += 1
    NF[len(frees)] = o ^ NX
    TA = clk[0]
    NV[3] = clk[1]
    NV[4] = clk[2]
    TW = clk[3]
    NB = nb
    NV[1] = len(geo) // NET_GEOM
    NV[2] = nin
    print('@ok', mem())


def mk():
    # the sample buffer, weights, biases and momentum buffers, allocated once setup's arguments are
    # garbage and collected (they would leave holes between them)
    global XS
    gc.collect()
    XS = af(NB * NV[2])
    for l in range(NV[1]):
        g = l * NET_GEOM
        k = NG[g]
        n = 0
        if k == L_DENSE or k == L_CONV:
            n = NG[g + 7] * NG[g + 8] * NG[g + 3] * NG[g + 6]
            m = NG[g + 6]
        elif k == L_DW:
            n = NG[g + 7] * NG[g + 8] * NG[g + 3]
            m = NG[g + 3]
        if n:
            WT[l] = zf(n)
            BS[l] = zf(m)
            if MU:
                VW[l] = zf(n)
                VB[l] = zf(m)
    print('@ok', mem())


def pw(l, t, o, h, k):
    # floats o.. of layer l's weights (t 0), biases (t 1) or the sample (l -1), from verified hex
    if nck(h) != k:
        print('@E')
        return
    a = XS if l < 0 else (WT[l] if t == 0 else BS[l])
    v = array('f', unhexlify(h))
    for i in range(len(v)):
        a[o + i] = v[i]
    n = o + len(v)
    v = None
    gc.collect()     # this line's garbage goes now, from the lowest holes: left to pile up, it would fill the
    print('@%d %d' % (n, k))   # heap and the odd object it keeps (stale pointers) would sit in the big holes


def s(q, y):
    # step q on the staged samples with labels y (a list); a repeated q is answered from memory, a step that
    # started and failed is never run again
    global NQ, NR, NT
    if q == NQ:
        print('@' + NR)
        return
    if q == NT:
        print('@' + STEP_FAILED)
        return
    NT = q
    NR = ''
    a = mem()
    v = run(y)
    n = NV[0]
    h = '%d %s %d ' % (q, fbits(v), a)
    h += ','.join([str(~TK[i]) for i in range(n)]) + ' ' + ','.join([str(MA[i]) for i in range(n)])
    h += ' ' + ','.join([str(GA[i]) for i in range(n)])
    NR = h + ' #' + str(nck(h))
    NQ = q
    print('@' + NR)


def fbits(v):
    # a float32's bits as 8 hex digits (exact)
    b = bytes(array('f', [v]))
    return '%02x%02x%02x%02x' % (b[3], b[2], b[1], b[0])


def run(y):
    # one step of the program: returns the loss; TK and MA hold each op's ticks and live heap
    LV[0] = 0.0
    clk0()
    for n in range(NV[0]):
        op(n, y)
    return LV[0]


def op(n, y):
    # op n of the program, in a frame of its own: MicroPython's collector scans a live frame's whole value
    # stack, stale slots included, so a loop body in run() would keep the last op's temporaries (a boxed
    # float among its garbage, anywhere in the heap) alive; a new call starts with its slots cleared
    r = 8 * n
    c = NP[r] ^ NX
    l = NP[r + 1] ^ NX
    i1 = NP[r + 2] ^ NX
    i2 = NP[r + 3] ^ NX
    i3 = NP[r + 4] ^ NX
    o1 = NP[r + 5] ^ NX
    o2 = NP[r + 6] ^ NX
    o3 = NP[r + 7] ^ NX
    g = l * NET_GEOM
    k = NG[g] if l >= 0 else 0
    a = mem()
    t0 = now()
    if c == OP_FWD:
        x = NS[i1]
        if k == L_DENSE:
            NS[o1] = dense(x, WT[l], BS[l], NG[g + 3], NG[g + 6], NG[g + 13], NB)
        elif k == L_CONV:
            NS[o1], NS[o2] = conv(x, WT[l], BS[l], NG, g, NB)
        elif k == L_DW:
            NS[o1] = dw(x, WT[l], BS[l], NG, g, NB)
        elif k == L_GAP:
            NS[o1] = gap(x, NG, g, NB)
        else:
            NS[o1] = pool(x, NG, g, k == L_MAXPOOL, NB)
        x = None
    elif c == OP_DX:
        e = NS[i1]
        if k == L_DENSE:
            NS[o1] = dense_dx(e, WT[l], NG[g + 3], NG[g + 6], NB)
        elif k == L_CONV:
            NS[o1], NS[o2] = conv_dx(e, WT[l], NG, g, NB)
        elif k == L_DW:
            NS[o1] = dw_dx(e, WT[l], NG, g, NB)
        elif k == L_MAXPOOL:
            NS[o1] = maxpool_dx(e, NS[i2], NS[i3], NG, g, NB)
        elif k == L_AVGPOOL:
            NS[o1] = avgpool_dx(e, NG, g, NB)
        else:
            NS[o1] = gap_dx(e, NG, g, NB)
        e = None
    elif c == OP_WGRAD:
        if k == L_DENSE:
            NS[o1], NS[o2] = dense_wg(NS[i1], NS[i2], NG[g + 3], NG[g + 6], NB)
        elif k == L_CONV:
            NS[o1], NS[o2], NS[o3] = conv_wg(NS[i1], NS[i2], NG, g, NB)
        else:
            NS[o1], NS[o2] = dw_wg(NS[i1], NS[i2], NG, g, NB)
    elif c == OP_UPD:
        w = WT[l]
        sgd(w, NS[i1], VW[l], LR, MU, len(w))
        w = BS[l]
        sgd(w, NS[i2], VB[l], LR, MU, len(w))
        w = None
    elif c == OP_ACT:
        e = NS[i1]
        relu_back(e, NS[i2], len(e))
        e = None
    elif c == OP_LOSS:
        x = NS[i1]
        NS[o1], LV[0] = ce(x, y, len(x) // NB, NB)   # the loss in an array, not a boxed float kept
        x = None                                    # for the step: made among the op's garbage, it
    else:                                           # could sit in any hole and split it
        NS[o1] = array('f', XS)
    TK[n] = ~ticks(t0, now())                       # stored as ~ticks (see NX)
    GA[n] = gc.mem_alloc() - a
    MA[n] = mem()
    for i in range(NF[n] ^ NX, NF[n + 1] ^ NX):
        NS[NL[i] ^ NX] = None


BAL = None                                                   # calibration ballast


def ballast(n):
    # hold about n more bytes of live heap: 4 KB pieces (few: a list of more than the collector's mark
    # stack of children makes every collection rescan the heap), 1 KB ones where the heap is fragmented
    global BAL
    BAL = None
    gc.collect()
    BAL = []
    k = 4096
    while n >= 1024:
        try:
            BAL.append(bytearray(k - 16))
            n -= k
        except MemoryError:
            if k == 1024:
                break
            k = 1024


def gct():
    # one collection, timed: live heap bytes and timer ticks
    a = mem()
    clk0()
    t0 = now()
    gc.collect()
    print('@%d %d' % (a, ticks(t0, now())))
