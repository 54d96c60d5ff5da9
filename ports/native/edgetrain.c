/* edgetrain kernels: see edgetrain.h for layouts and conventions. */
#include "edgetrain.h"

#include <math.h>

/* ---------------------------------------------------------------------------------------- dense */

void et_dense_forward(const float *x, const float *W, const float *b, float *y, int n, int in, int out, int relu)
{
    for (int s = 0; s < n; s++) {
        const float *xs = x + s * in;
        float *ys = y + s * out;
        for (int o = 0; o < out; o++) {
            const float *wp = W + o;
            float acc = 0.0f;
            for (int i = 0; i < in; i++, wp += out)
                acc += xs[i] * *wp;
            acc += b[o];
            ys[o] = (relu && acc < 0.0f) ? 0.0f : acc;
        }
    }
}

void et_dense_weight_grad(const float *x, const float *dz, float *dW, float *db, int n, int in, int out)
{
    for (int s = 0; s < n; s++) {
        const float *xs = x + s * in;
        const float *ds = dz + s * out;
        for (int i = 0; i < in; i++) {
            float xi = xs[i];
            float *row = dW + i * out;
            if (s == 0)
                for (int o = 0; o < out; o++)
                    row[o] = xi * ds[o];
            else
                for (int o = 0; o < out; o++)
                    row[o] += xi * ds[o];
        }
        for (int o = 0; o < out; o++)
            db[o] = (s == 0) ? ds[o] : db[o] + ds[o];
    }
}

void et_dense_input_grad(const float *dz, const float *W, float *dx, int n, int in, int out)
{
    for (int s = 0; s < n; s++) {
        const float *ds = dz + s * out;
        float *xs = dx + s * in;
        for (int i = 0; i < in; i++) {
            const float *row = W + i * out;
            float acc = 0.0f;
            for (int o = 0; o < out; o++)
                acc += ds[o] * row[o];
            xs[i] = acc;
        }
    }
}

/* ----------------------------------------------------------------------------------------- conv */

/* One im2col patch: the input window of output position pos (over the whole batch), zero outside. Each
 * kernel row is kw * cin contiguous floats of the input (NHWC), copied in one run where it lies inside. */
static void patch(const et_conv_t *c, const float *x, int pos, float *p)
{
    int per = c->oh * c->ow;
    int s = pos / per, r = pos % per;
    int oy = r / c->ow, ox = r % c->ow;
    int cin = c->cin, run = c->kw * cin;
    int ix0 = ox * c->sw - c->pl;
    const float *xs = x + s * c->h * c->w * cin;
    for (int i = 0; i < c->kh; i++, p += run) {
        int iy = oy * c->sh + i - c->pt;
        if (iy < 0 || iy >= c->h) {
            for (int k = 0; k < run; k++)
                p[k] = 0.0f;
        } else if (ix0 >= 0 && ix0 + c->kw <= c->w) {
            const float *src = xs + (iy * c->w + ix0) * cin;
            for (int k = 0; k < run; k++)
                p[k] = src[k];
        } else {
            for (int j = 0; j < c->kw; j++) {
                int ix = ix0 + j;
                if (ix < 0 || ix >= c->w) {
                    for (int ch = 0; ch < cin; ch++)
                        p[j * cin + ch] = 0.0f;
                } else {
                    const float *src = xs + (iy * c->w + ix) * cin;
                    for (int ch = 0; ch < cin; ch++)
                        p[j * cin + ch] = src[ch];
                }
            }
        }
    }
}

void et_conv2d_forward(const et_conv_t *c, const float *x, const float *W, const float *b, float *y,
                       float *cols, int n, int relu)
{
    int fan = c->kh * c->kw * c->cin, cout = c->cout;
    int npos = n * c->oh * c->ow;
    float *p0 = cols, *p1 = cols + fan;
    for (int pos = 0; pos < npos; pos += 2) {
        int two = pos + 1 < npos;
        patch(c, x, pos, p0);
        if (two)
            patch(c, x, pos + 1, p1);
        float *y0 = y + pos * cout, *y1 = y0 + cout;
        for (int co = 0; co < cout; co++) {
            const float *wp = W + co;
            float a0 = 0.0f, a1 = 0.0f;
            for (int k = 0; k < fan; k++, wp += cout) {
                float wk = *wp;
                a0 += p0[k] * wk;
                a1 += p1[k] * wk;
            }
            a0 += b[co];
            y0[co] = (relu && a0 < 0.0f) ? 0.0f : a0;
            if (two) {
                a1 += b[co];
                y1[co] = (relu && a1 < 0.0f) ? 0.0f : a1;
            }
        }
    }
}

void et_conv2d_weight_grad(const et_conv_t *c, const float *x, const float *dz, float *dW, float *db,
                           float *cols, int n)
{
    int fan = c->kh * c->kw * c->cin, cout = c->cout;
    int npos = n * c->oh * c->ow;
    float *p0 = cols, *p1 = cols + fan;
    for (int i = 0; i < fan * cout; i++)
        dW[i] = 0.0f;
    for (int co = 0; co < cout; co++)
        db[co] = 0.0f;
    for (int pos = 0; pos < npos; pos += 2) {
        const float *d0 = dz + pos * cout, *d1 = d0 + cout;
        int two = pos + 1 < npos;
        patch(c, x, pos, p0);
        if (two)
            patch(c, x, pos + 1, p1);
        for (int co = 0; co < cout; co++) {
            float g0 = d0[co], g1 = two ? d1[co] : 0.0f;
            float *wp = dW + co;
            if (two)
                for (int k = 0; k < fan; k++, wp += cout)
                    *wp += p0[k] * g0 + p1[k] * g1;
            else
                for (int k = 0; k < fan; k++, wp += cout)
                    *wp += p0[k] * g0;
            db[co] += two ? g0 + g1 : g0;
        }
    }
}

void et_conv2d_input_grad(const et_conv_t *c, const float *dz, const float *W, float *dx, float *dcol, int n)
{
    int fan = c->kh * c->kw * c->cin, cout = c->cout;
    int per = c->oh * c->ow, plane = c->h * c->w * c->cin;
    for (int i = 0; i < n * plane; i++)
        dx[i] = 0.0f;
    for (int pos = 0; pos < n * per; pos++) {
        const float *d = dz + pos * cout;
        for (int k = 0; k < fan; k++) {
            const float *row = W + k * cout;
            float acc = 0.0f;
            for (int co = 0; co < cout; co++)
                acc += d[co] * row[co];
            dcol[k] = acc;
        }
        int s = pos / per, r = pos % per;
        int oy = r / c->ow, ox = r % c->ow;
        int cin = c->cin, run = c->kw * cin;
        int ix0 = ox * c->sw - c->pl;
        float *xs = dx + s * plane;
        const float *g = dcol;
        for (int i = 0; i < c->kh; i++, g += run) {
            int iy = oy * c->sh + i - c->pt;
            if (iy < 0 || iy >= c->h)
                continue;
            if (ix0 >= 0 && ix0 + c->kw <= c->w) {
                float *dst = xs + (iy * c->w + ix0) * cin;
                for (int k = 0; k < run; k++)
                    dst[k] += g[k];
                continue;
            }
            for (int j = 0; j < c->kw; j++) {
                int ix = ix0 + j;
                if (ix < 0 || ix >= c->w)
                    continue;
                float *dst = xs + (iy * c->w + ix) * cin;
                for (int ch = 0; ch < cin; ch++)
                    dst[ch] += g[j * cin + ch];
            }
        }
    }
}

/* ------------------------------------------------------------------------------- depthwise conv */
/* Channel by channel with the sum in a register; the valid kernel taps of each output are computed once
 * (no bounds test per tap), so the work is one multiply-add per MAC plus a little per output. */

/* The kernel rows/columns [*lo, *hi) of output coordinate o that land inside an input of size n. */
static void taps(int o, int stride, int pad, int k, int n, int *lo, int *hi)
{
    int first = o * stride - pad;
    *lo = first < 0 ? -first : 0;
    *hi = first + k > n ? n - first : k;
}

void et_dwconv_forward(const et_conv_t *c, const float *x, const float *W, const float *b, float *y, int n,
                       int relu)
{
    int ch = c->cout, rowx = c->w * ch;
    for (int s = 0; s < n; s++) {
        const float *xs = x + s * c->h * rowx;
        float *ys = y + s * c->oh * c->ow * ch;
        for (int k = 0; k < ch; k++) {
            for (int oy = 0; oy < c->oh; oy++) {
                int i0, i1;
                taps(oy, c->sh, c->pt, c->kh, c->h, &i0, &i1);
                for (int ox = 0; ox < c->ow; ox++) {
                    int j0, j1;
                    taps(ox, c->sw, c->pl, c->kw, c->w, &j0, &j1);
                    float acc = b[k];
                    const float *xr = xs + ((oy * c->sh - c->pt + i0) * c->w + ox * c->sw - c->pl) * ch + k;
                    const float *wr = W + i0 * c->kw * ch + k;
                    for (int i = i0; i < i1; i++, xr += rowx, wr += c->kw * ch)
                        for (int j = j0; j < j1; j++)
                            acc += xr[j * ch] * wr[j * ch];
                    ys[(oy * c->ow + ox) * ch + k] = (relu && acc < 0.0f) ? 0.0f : acc;
                }
            }
        }
    }
}

void et_dwconv_weight_grad(const et_conv_t *c, const float *x, const float *dz, float *dW, float *db, int n)
{
    int ch = c->cout, rowx = c->w * ch;
    for (int k = 0; k < ch; k++) {
        float bsum = 0.0f;
        for (int s = 0; s < n; s++)
            for (int p = 0; p < c->oh * c->ow; p++)
                bsum += dz[(s * c->oh * c->ow + p) * ch + k];
        db[k] = bsum;
        for (int i = 0; i < c->kh; i++)
            for (int j = 0; j < c->kw; j++) {
                /* the outputs whose tap (i, j) lands inside the input */
                int oy0 = 0, oy1 = c->oh, ox0 = 0, ox1 = c->ow;
                while (oy0 < oy1 && oy0 * c->sh + i - c->pt < 0) oy0++;
                while (oy1 > oy0 && (oy1 - 1) * c->sh + i - c->pt >= c->h) oy1--;
                while (ox0 < ox1 && ox0 * c->sw + j - c->pl < 0) ox0++;
                while (ox1 > ox0 && (ox1 - 1) * c->sw + j - c->pl >= c->w) ox1--;
                float acc = 0.0f;
                for (int s = 0; s < n; s++) {
                    const float *xs = x + s * c->h * rowx + k;
                    const float *ds = dz + s * c->oh * c->ow * ch + k;
                    for (int oy = oy0; oy < oy1; oy++) {
                        const float *xr = xs + ((oy * c->sh + i - c->pt) * c->w + ox0 * c->sw + j - c->pl) * ch;
                        const float *dr = ds + (oy * c->ow + ox0) * ch;
                        for (int ox = ox0; ox < ox1; ox++, xr += c->sw * ch, dr += ch)
                            acc += *xr * *dr;
                    }
                }
                dW[(i * c->kw + j) * ch + k] = acc;
            }
    }
}

void et_dwconv_input_grad(const et_conv_t *c, const float *dz, const float *W, float *dx, int n)
{
    int ch = c->cout, rowx = c->w * ch;
    for (int i = 0; i < n * c->h * rowx; i++)
        dx[i] = 0.0f;
    for (int s = 0; s < n; s++) {
        float *xs = dx + s * c->h * rowx;
        const float *ds = dz + s * c->oh * c->ow * ch;
        for (int k = 0; k < ch; k++) {
            for (int oy = 0; oy < c->oh; oy++) {
                int i0, i1;
                taps(oy, c->sh, c->pt, c->kh, c->h, &i0, &i1);
                for (int ox = 0; ox < c->ow; ox++) {
                    int j0, j1;
                    taps(ox, c->sw, c->pl, c->kw, c->w, &j0, &j1);
                    float g = ds[(oy * c->ow + ox) * ch + k];
                    float *xr = xs + ((oy * c->sh - c->pt + i0) * c->w + ox * c->sw - c->pl) * ch + k;
                    const float *wr = W + i0 * c->kw * ch + k;
                    for (int i = i0; i < i1; i++, xr += rowx, wr += c->kw * ch)
                        for (int j = j0; j < j1; j++)
                            xr[j * ch] += g * wr[j * ch];
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------- pools */

void et_maxpool_forward(const float *x, float *y, int n, int h, int w, int ch, int kh, int kw)
{
    int oh = h / kh, ow = w / kw;
    for (int s = 0; s < n; s++) {
        const float *xs = x + s * h * w * ch;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float *yo = y + ((s * oh + oy) * ow + ox) * ch;
                const float *corner = xs + (oy * kh * w + ox * kw) * ch;
                for (int k = 0; k < ch; k++) {
                    float m = corner[k];
                    for (int i = 0; i < kh; i++)
                        for (int j = 0; j < kw; j++) {
                            float v = corner[(i * w + j) * ch + k];
                            if (v > m)
                                m = v;
                        }
                    yo[k] = m;
                }
            }
    }
}

void et_maxpool_input_grad(const float *x, const float *y, const float *dz, float *dx, int n, int h, int w,
                           int ch, int kh, int kw)
{
    int oh = h / kh, ow = w / kw;
    for (int s = 0; s < n; s++) {
        const float *xs = x + s * h * w * ch;
        float *gs = dx + s * h * w * ch;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int o = ((s * oh + oy) * ow + ox) * ch;
                int off = (oy * kh * w + ox * kw) * ch;
                for (int k = 0; k < ch; k++) {
                    float m = y[o + k], g = dz[o + k];
                    int cnt = 0;
                    for (int i = 0; i < kh; i++)
                        for (int j = 0; j < kw; j++)
                            cnt += xs[off + (i * w + j) * ch + k] == m;
                    float share = g / (float)cnt;
                    for (int i = 0; i < kh; i++)
                        for (int j = 0; j < kw; j++) {
                            int e = off + (i * w + j) * ch + k;
                            gs[e] = xs[e] == m ? share : 0.0f;
                        }
                }
            }
        /* the ragged bottom rows and right columns no window covers */
        for (int iy = 0; iy < h; iy++)
            for (int ix = (iy < oh * kh ? ow * kw : 0); ix < w; ix++)
                for (int k = 0; k < ch; k++)
                    gs[(iy * w + ix) * ch + k] = 0.0f;
    }
}

void et_avgpool_forward(const float *x, float *y, int n, int h, int w, int ch, int kh, int kw)
{
    int oh = h / kh, ow = w / kw;
    float cnt = (float)(kh * kw);
    for (int s = 0; s < n; s++) {
        const float *xs = x + s * h * w * ch;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float *yo = y + ((s * oh + oy) * ow + ox) * ch;
                const float *corner = xs + (oy * kh * w + ox * kw) * ch;
                for (int k = 0; k < ch; k++) {
                    float acc = 0.0f;
                    for (int i = 0; i < kh; i++)
                        for (int j = 0; j < kw; j++)
                            acc += corner[(i * w + j) * ch + k];
                    yo[k] = acc / cnt;
                }
            }
    }
}

void et_avgpool_input_grad(const float *dz, float *dx, int n, int h, int w, int ch, int kh, int kw)
{
    int oh = h / kh, ow = w / kw;
    float inv = (float)(1.0 / (double)(kh * kw));
    /* backwards over the windows: dx is never smaller than dz, and an in-place run (1 x 1 windows)
     * then reads each dz entry before its slot in dx is written */
    for (int s = n - 1; s >= 0; s--) {
        float *gs = dx + s * h * w * ch;
        for (int iy = h - 1; iy >= 0; iy--)
            for (int ix = w - 1; ix >= 0; ix--) {
                float *dst = gs + (iy * w + ix) * ch;
                int oy = iy / kh, ox = ix / kw;
                if (oy >= oh || ox >= ow) {
                    for (int k = 0; k < ch; k++)
                        dst[k] = 0.0f;
                    continue;
                }
                const float *d = dz + ((s * oh + oy) * ow + ox) * ch;
                for (int k = 0; k < ch; k++)
                    dst[k] = d[k] * inv;
            }
    }
}

void et_gap_forward(const float *x, float *y, int n, int hw, int ch)
{
    for (int s = 0; s < n; s++) {
        const float *xs = x + s * hw * ch;
        for (int k = 0; k < ch; k++) {
            float acc = 0.0f;
            for (int p = 0; p < hw; p++)
                acc += xs[p * ch + k];
            y[s * ch + k] = acc / (float)hw;
        }
    }
}

void et_gap_input_grad(const float *dz, float *dx, int n, int hw, int ch)
{
    float inv = 1.0f / (float)hw;   /* one division: soft float divides are dear */
    for (int s = n - 1; s >= 0; s--)
        for (int p = hw - 1; p >= 0; p--)
            for (int k = ch - 1; k >= 0; k--)
                dx[(s * hw + p) * ch + k] = dz[s * ch + k] * inv;
}

/* ------------------------------------------------------------------------------ activation, loss */

void et_bias_grad(const float *dz, float *db, int rows, int ch)
{
    for (int k = 0; k < ch; k++)
        db[k] = 0.0f;
    for (int r = 0; r < rows; r++, dz += ch)
        for (int k = 0; k < ch; k++)
            db[k] += dz[k];
}

void et_relu_backward(const float *y, float *g, int count)
{
    for (int i = 0; i < count; i++)
        if (!(y[i] > 0.0f))
            g[i] = 0.0f;
}

float et_softmax_xent(const float *logits, const int32_t *labels, float *grad, int n, int k)
{
    float total = 0.0f;
    float inv_n = (float)(1.0 / (double)n);
    for (int s = 0; s < n; s++) {
        const float *z = logits + s * k;
        float *g = grad + s * k;
        float m = z[0];
        for (int j = 1; j < k; j++)
            if (z[j] > m)
                m = z[j];
        float zy = z[labels[s]] - m;
        float sum = 0.0f;
        for (int j = 0; j < k; j++) {
            float e = expf(z[j] - m);      /* reads z[j] before g[j] (maybe the same slot) is written */
            g[j] = e;
            sum += e;
        }
        total += logf(sum) - zy;
        for (int j = 0; j < k; j++)
            g[j] = g[j] / sum;
        g[labels[s]] -= 1.0f;
        for (int j = 0; j < k; j++)
            g[j] *= inv_n;
    }
    return total / (float)n;
}

/* ---------------------------------------------------------------------------------------- update */

void et_sgd_update(float *w, const float *g, float *v, int count, float lr, float momentum)
{
    if (v) {
        for (int i = 0; i < count; i++) {
            float vi = v[i] * momentum + g[i];
            v[i] = vi;
            w[i] -= lr * vi;
        }
    } else {
        for (int i = 0; i < count; i++)
            w[i] -= lr * g[i];
    }
}

void et_copy(float *dst, const float *src, int count)
{
    for (int i = 0; i < count; i++)
        dst[i] = src[i];
}
