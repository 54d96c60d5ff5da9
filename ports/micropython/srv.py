# edgesim device-side server (MicroPython 1.9): main() allocates the model, then serves the lines the
# host sends -- nothing is compiled once the model is in the heap, so no parser memory is needed.
# Lines are read from the UART into one fixed buffer (input() would keep the last 8 lines in the
# readline history: ~1 KB of a 10 KB heap) and end with \r. Lines: "w|b|x <layer> <offset> <ck> <hex>" writes weights, biases or the sample (x);
# "s <seq> <label>" runs one step on the sample; "e" ends. Floats travel as the 8 hex digits of their
# uint32 bits (exact); <ck> is a checksum of the hex. A bad line is answered @E and the host sends it
# again; a repeated step is answered from memory, not run twice; a step that started and failed half-way
# is answered X (protocol.STEP_FAILED) and never run again. L is protocol.LINE_BYTES long (written out,
# as in mlp.py).
import gc
import ustruct
import mlp
from microbit import uart

R = ''
Q = -1
T = -1
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


def main(z, lr):
    # first the live heap with no model (the port's own footprint), then with it. main's frame is
    # kept small (it lives all along, so it must not land in the middle of the free heap); each
    # line is served by serve(), whose frame is freed after the line
    gc.collect()
    a = gc.mem_alloc()
    if z:
        mlp.setup(z, lr)
    gc.collect()
    print('@ready %d %d %d' % (a, gc.mem_alloc(), gc.mem_free()))
    while serve(line().split()):
        pass


def serve(h):
    global R, Q, T
    c = h[0] if h else ''
    if c == 'e':
        return False
    try:
        if c == 's':
            q = int(h[1])
            if q == T and q != Q:
                print('@X')
                return True
            if q != Q:
                T = q
                # the step's answer: seq, loss bits, heap before, per-op us, per-op heap, checksum
                y = int(h[2])
                h = R = None
                gc.collect()
                a = gc.mem_alloc()
                v = mlp.step(y)
                h = '%d %08x %d ' % (q, ustruct.unpack('<I', ustruct.pack('<f', v))[0], a)
                h += ','.join([str(mlp.TK[i]) for i in range(mlp.N)]) + ' '
                h += ','.join([str(mlp.MA[i]) for i in range(mlp.N)])
                R = h + ' #' + str(ck(h))
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
    return True
