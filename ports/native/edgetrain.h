/* edgetrain: a small float32 training library for microcontrollers (edgesim, issue #11).
 *
 * Batch first, NHWC, row-major, the same layouts and the same arithmetic as the host's numpy layers
 * (workloads/layers.py). No dynamic allocation: every buffer, workspaces included, is passed in by the
 * caller (the generated program hands out pieces of one static arena at the planner's offsets).
 *
 * Conv2D uses im2col over ET_IM2COL_PATCHES patches at a time (the workspace the host trace counts:
 * forward and weight gradient take 2 patches of fan_in values, input gradient 1 patch).
 * Kernels that the planner may run in place (an output at the same offset as an input it frees:
 * pools, global average pool, softmax cross-entropy) read every input value before it is overwritten.
 */
#ifndef EDGETRAIN_H
#define EDGETRAIN_H

#include <stdint.h>

#define ET_IM2COL_PATCHES 2

/* Geometry of a (depthwise) convolution: input h x w x cin, output oh x ow x cout, kernel kh x kw,
 * stride sh x sw, padding pt (top) and pl (left); the bottom/right padding follows from the sizes. */
typedef struct {
    int16_t h, w, cin, oh, ow, cout, kh, kw, sh, sw, pt, pl;
} et_conv_t;

/* Dense: y = relu?(x @ W + b), x (n, in), W (in, out), b (out), y (n, out). */
void et_dense_forward(const float *x, const float *W, const float *b, float *y, int n, int in, int out, int relu);
/* dW = x^T dz, db = sum over the batch of dz. */
void et_dense_weight_grad(const float *x, const float *dz, float *dW, float *db, int n, int in, int out);
/* dx = dz W^T. */
void et_dense_input_grad(const float *dz, const float *W, float *dx, int n, int in, int out);

/* Conv2D, W (kh, kw, cin, cout); cols: ET_IM2COL_PATCHES * fan_in floats (fan_in = kh*kw*cin). */
void et_conv2d_forward(const et_conv_t *c, const float *x, const float *W, const float *b, float *y,
                       float *cols, int n, int relu);
void et_conv2d_weight_grad(const et_conv_t *c, const float *x, const float *dz, float *dW, float *db,
                           float *cols, int n);
/* dcol: fan_in floats (one patch's gradient, scattered back into dx). */
void et_conv2d_input_grad(const et_conv_t *c, const float *dz, const float *W, float *dx, float *dcol, int n);

/* Depthwise convolution, W (kh, kw, c), cin == cout; no workspace. */
void et_dwconv_forward(const et_conv_t *c, const float *x, const float *W, const float *b, float *y, int n,
                       int relu);
void et_dwconv_weight_grad(const et_conv_t *c, const float *x, const float *dz, float *dW, float *db, int n);
void et_dwconv_input_grad(const et_conv_t *c, const float *dz, const float *W, float *dx, int n);

/* Pools over kh x kw windows with stride = window; a ragged bottom/right edge is dropped (floor). */
void et_maxpool_forward(const float *x, float *y, int n, int h, int w, int ch, int kh, int kw);
/* The gradient goes to the window's maxima, tied maxima share it equally. */
void et_maxpool_input_grad(const float *x, const float *y, const float *dz, float *dx, int n, int h, int w,
                           int ch, int kh, int kw);
void et_avgpool_forward(const float *x, float *y, int n, int h, int w, int ch, int kh, int kw);
void et_avgpool_input_grad(const float *dz, float *dx, int n, int h, int w, int ch, int kh, int kw);
/* Global average pool (n, h, w, c) -> (n, c). */
void et_gap_forward(const float *x, float *y, int n, int hw, int ch);
void et_gap_input_grad(const float *dz, float *dx, int n, int hw, int ch);

/* Bias gradient alone (bias-only updates): db[c] = sum over the rows of dz (rows = n * positions). */
void et_bias_grad(const float *dz, float *db, int rows, int ch);

/* ReLU backward, in place on the gradient: g = (y > 0) ? g : 0. */
void et_relu_backward(const float *y, float *g, int count);

/* Softmax cross-entropy: returns the mean loss (nats) over the n samples and writes the gradient of the
 * mean loss w.r.t. the logits, (softmax - onehot) / n, into grad (which may be the logits' buffer). */
float et_softmax_xent(const float *logits, const int32_t *labels, float *grad, int n, int k);

/* SGD (PyTorch convention): v = momentum * v + g; w -= lr * v (v == 0: plain w -= lr * g). */
void et_sgd_update(float *w, const float *g, float *v, int count, float lr, float momentum);

/* Copy count floats. */
void et_copy(float *dst, const float *src, int count);

#endif
