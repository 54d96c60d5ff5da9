# edgesim device-side server (MicroPython 1.9): main() allocates the model, then serves the lines the
# host sends -- nothing is compiled once the model is in the heap, so no parser memory is needed.
# Lines are read from the UART into one fixed buffer (input() would keep the last 8 lines in the
# readline history: ~1 KB of a 10 KB heap) and end with \r. Lines: "w|b|x <layer> <offset> <ck> <hex>" writes weights, biases or the sample (x);
# "s <seq> <label>" runs one step on the sample; "e" ends. Floats travel as the 8 hex digits of their
# uint32 bits (exact); <ck> is a checksum of the hex. A bad line is answered @E and the host sends it
# again; a repeated step is answered from memory, not run twice.
import gc
import ustruct
import mlp
from microbit import uart

R = ''
L = bytearray(120)


def line():
    n = 0
    while True:
        if uart.any():
            c = uart.read(1)[0]
            if c == 13:
                return str(L[:n], 'utf-8')
            if n < 120 and c != 10:
                L[n] = c
                n += 1


def ck(h):
    s = 0
    for c in h:
        s = (s * 31 + ord(c)) & 0xffff
    return s


def hexf(a, o, h):
    for i in range(0, len(h), 8):
        a[o] = ustruct.unpack('<f', ustruct.pack('<HH', int(h[i + 4:i + 8], 16), int(h[i:i + 4], 16)))[0]
        o += 1


def run(q, y):
    # one step; its answer: seq, loss bits, heap before, per-op us, per-op heap, checksum
    global R
    R = ''
    gc.collect()
    a = gc.mem_alloc()
    mlp.N = 0
    v = mlp.forward(y)
    mlp.backward()
    r = '%d %08x %d ' % (q, ustruct.unpack('<I', ustruct.pack('<f', v))[0], a)
    r += ','.join([str(mlp.TK[i]) for i in range(mlp.N)]) + ' '
    r += ','.join([str(mlp.MA[i]) for i in range(mlp.N)])
    R = r + ' #' + str(ck(r))


def main(z, lr):
    # first the live heap with no model (the port's own footprint), then with it
    gc.collect()
    a = gc.mem_alloc()
    if z:
        mlp.setup(z, lr)
    gc.collect()
    print('@ready %d %d %d' % (a, gc.mem_alloc(), gc.mem_free()))
    Q = -1
    while True:
        h = line().split()
        c = h[0] if h else ''
        if c == 'e':
            return
        try:
            if c == 's':
                q = int(h[1])
                if q != Q:
                    y = int(h[2])
                    h = None
                    run(q, y)
                    Q = q
                print('@' + R)
            elif c == 'w' or c == 'b' or c == 'x':
                if ck(h[4]) != int(h[3]) or len(h[4]) % 8:
                    raise ValueError
                o = int(h[2])
                hexf(mlp.W[int(h[1])] if c == 'w' else mlp.B[int(h[1])] if c == 'b' else mlp.XS, o, h[4])
                print('@%d %s' % (o + len(h[4]) // 8, h[3]))
            else:
                raise ValueError
        except (ValueError, IndexError, TypeError):
            print('@E')
