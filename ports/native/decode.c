/* Decoders for compressed weights: see decode.h. */
#include "decode.h"

/* ------------------------------------------------------------------------- compressed weights */
float et_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1fu) {                      /* inf / nan */
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {                   /* normal: rebias 15 -> 127 */
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {                   /* signed zero */
        u = sign;
    } else {                                 /* subnormal half: normalise */
        exp = 113u;
        while (!(man & 0x400u)) {
            man <<= 1;
            exp--;
        }
        u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    union { uint32_t u; float f; } v = {u};
    return v.f;
}

void et_decode_int8(const int8_t *q, const uint16_t *scales, int rows, int cols, float *w)
{
    for (int r = 0; r < rows; r++) {
        const float s = et_half_to_float(scales[r]);
        const int8_t *qr = q + r * cols;
        float *wr = w + r * cols;
        for (int c = 0; c < cols; c++)
            wr[c] = (float)qr[c] * s;
    }
}

void et_decode_binary1(const uint8_t *bits, const uint16_t *alphas, int rows, int cols, float *w)
{
    int i = 0;
    for (int r = 0; r < rows; r++) {
        const float a = et_half_to_float(alphas[r]), na = -a;
        for (int c = 0; c < cols; c++, i++)
            w[i] = (bits[i >> 3] & (0x80u >> (i & 7))) ? a : na;
    }
}

void et_decode_csr_f32(const float *values, const uint16_t *col, const uint16_t *rowptr, int rows, int cols,
                       float *w)
{
    for (int i = 0; i < rows * cols; i++)          /* zero fill: the pruned weights */
        w[i] = 0.0f;
    for (int r = 0; r < rows; r++) {
        float *wr = w + r * cols;
        for (int k = rowptr[r], end = rowptr[r + 1]; k < end; k++)
            wr[col[k]] = values[k];
    }
}

void et_decode_csr_int8(const int8_t *q, const uint16_t *scales, const uint16_t *col, const uint16_t *rowptr,
                        int rows, int cols, float *w)
{
    for (int i = 0; i < rows * cols; i++)
        w[i] = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float s = et_half_to_float(scales[r]);
        float *wr = w + r * cols;
        for (int k = rowptr[r], end = rowptr[r + 1]; k < end; k++)
            wr[col[k]] = (float)q[k] * s;
    }
}
