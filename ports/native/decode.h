/* Decoders for compressed weights (workloads/compression) on the device: linked only into the programs
 * that decode (the decode micro-benchmark), so a training program's flash does not carry them. */
#ifndef EDGESIM_DECODE_H
#define EDGESIM_DECODE_H

#include <stdint.h>

/* Compressed weights (workloads/compression), decoded into a dense (rows = output channels) x cols float
 * buffer, row-major. Scales are IEEE float16 bit patterns, one per row. */
float et_half_to_float(uint16_t h);
/* int8 per output channel: w[r][c] = q[r][c] * scale[r]. */
void et_decode_int8(const int8_t *q, const uint16_t *scales, int rows, int cols, float *w);
/* 1-bit binary code: w[r][c] = bit ? +alpha[r] : -alpha[r]; bits packed MSB first over the row-major
 * weights (numpy packbits). */
void et_decode_binary1(const uint8_t *bits, const uint16_t *alphas, int rows, int cols, float *w);
/* CSR (magnitude pruning): a zero fill, then per row r the kept values k in rowptr[r] .. rowptr[r+1]-1 at
 * column col[k]; values float32, or int8 times the row's float16 scale. Column indices and row pointers are
 * stored as uint16 (the host counts them at their packed widths). */
void et_decode_csr_f32(const float *values, const uint16_t *col, const uint16_t *rowptr, int rows, int cols,
                       float *w);
void et_decode_csr_int8(const int8_t *q, const uint16_t *scales, const uint16_t *col, const uint16_t *rowptr,
                        int rows, int cols, float *w);

#endif
