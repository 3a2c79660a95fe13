/* Selective scan on the CPU: the recurrence of recbole_mamba/ops/scan.py, one (batch, channel) row
 * at a time, with the state vector h (d_state values) kept in registers and the loop over the
 * state vectorised. Compiled at first use by recbole_mamba/ops/scan_cpu.py; called through ctypes,
 * which releases the GIL, so Python threads run disjoint ranges of rows in parallel.
 *
 *   dt  = softplus(delta + delta_bias)    (softplus only if args->softplus)
 *   h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t
 *   y_t = <h_t, C_t> + D * u_t,   out_t = y_t * silu(z_t)
 *
 * Tensors (batch, dim, L) are addressed by three element strides, so time-major views need no copy.
 * A is (dim, n) and B, C are (batch, L, n) with unit stride along n. The backward pass recomputes
 * a row's states into a workspace of L * n values (in cache for the lengths this is used at) and
 * runs the adjoint recurrence in reverse; no (batch, L, dim, n) tensor exists anywhere.
 *
 * Built without -ffast-math (which would link crtfastmath.o and flush denormals process-wide);
 * the reductions are vectorised by "omp simd" (-fopenmp-simd), which needs no OpenMP runtime.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

typedef struct {
    i64 batch, dim, length, n;
    int softplus;
    const void *u, *delta, *A, *B, *C, *D, *z, *delta_bias; /* D, z, delta_bias may be NULL */
    i64 su[3], sdelta[3], sz[3];       /* strides (batch, dim, t) */
    i64 sB[2], sC[2];                  /* strides (batch, t); n is contiguous */
    void *out, *last_state;            /* out strided as sout; last_state (batch, dim, n) */
    i64 sout[3];
    /* backward only */
    const void *dout;
    i64 sdout[3];
    void *du, *ddelta, *dz;            /* strided as sgrad; dz only when z */
    i64 sgrad[3];
    i64 groups;                        /* channel groups: a work item is (group, batch row) */
    i64 segment;                       /* time steps per segment of the backward pass */
    void *dB, *dC;                     /* (groups, batch, L, n), one partial sum per group */
    void *dA, *dD, *ddelta_bias;       /* (batch, dim, n), (batch, dim), (batch, dim) per row */
} ScanArgs;

/* exp for the whole float range, vectorisable: x = k ln2 + r, |r| <= ln2 / 2, a degree-7
 * Taylor polynomial for exp(r) (truncation < 6e-9 relative), and 2^k built in the exponent bits. */
static inline float exp_f32(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.f / 5040.f;
    p = p * r + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

void recbole_mamba_exp_f32(const float *x, float *y, i64 count) {
    #pragma omp simd
    for (i64 i = 0; i < count; i++) y[i] = exp_f32(x[i]);
}

/* log(1 + w) for w in [0, 1], vectorisable: 2 atanh(s) with s = w / (2 + w) <= 1/3, its series
 * to s^13 (truncation < 2e-8 relative). */
static inline float log1p_unit_f32(float w) {
    const float s = w / (2.f + w), s2 = s * s;
    float p = 1.f / 13.f;
    p = p * s2 + 1.f / 11.f;
    p = p * s2 + 1.f / 9.f;
    p = p * s2 + 1.f / 7.f;
    p = p * s2 + 1.f / 5.f;
    p = p * s2 + 1.f / 3.f;
    p = p * s2 + 1.f;
    return 2.f * s * p;
}

/* The elementwise functions of each compute type: vectorisable ones for float, libm for double
 * (the double kernel serves exactness tests, not speed). softplus has torch's threshold 20. */
static inline float softplus_f32(float x) {
    const float r = (x > 0.f ? x : 0.f) + log1p_unit_f32(exp_f32(x > 0.f ? -x : x));
    return x > 20.f ? x : r;
}
static inline float sigmoid_f32(float x) { return 1.f / (1.f + exp_f32(-x)); }
static inline double exp_f64(double x) { return exp(x); }
static inline double softplus_f64(double x) { return x > 20. ? x : log1p(exp(x)); }
static inline double sigmoid_f64(double x) { return 1. / (1. + exp(-x)); }

/* One instantiation per compute type: SUFFIX f32 (float) or f64 (double). Buffers named *s hold
 * one row's time steps [s, e), indexed t - s. */
#define DEFINE_SCAN(real, SUFFIX)                                                                  \
                                                                                                   \
/* Steps [s, e) of row (b, d) of the elementwise inputs: dts = dt, us = u and, when dsp is given,  \
 * dsp = d dt / d delta. */                                                                        \
static void gather_##SUFFIX(const ScanArgs *a, i64 b, i64 d, i64 s, i64 e, real *dts, real *us,  \
                            real *dsp) {                                                           \
    const real *delta = (const real *)a->delta + b * a->sdelta[0] + d * a->sdelta[1];             \
    const real *u = (const real *)a->u + b * a->su[0] + d * a->su[1];                              \
    const real bias = a->delta_bias ? ((const real *)a->delta_bias)[d] : (real)0;                  \
    const i64 st = a->sdelta[2], su = a->su[2];                                                    \
    _Pragma("omp simd")                                                                            \
    for (i64 t = s; t < e; t++) {                                                                  \
        const real pre = delta[t * st] + bias;                                                     \
        dts[t - s] = a->softplus ? softplus_##SUFFIX(pre) : pre;                                   \
        us[t - s] = u[t * su];                                                                     \
        if (dsp) dsp[t - s] = a->softplus ? sigmoid_##SUFFIX(pre) : (real)1;                       \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* The recurrence of row (b, d) over steps [s, e) from the state in h (updated in place):          \
 * ys = <h_t, C_t>; h_t into hs[(t - s) * n] and exp(dt_t A) into es when hs is given. */          \
static void states_##SUFFIX(const ScanArgs *a, i64 b, i64 d, i64 s, i64 e, const real *dts,      \
                            const real *us, real *h, real *hs, real *es, real *ys) {               \
    const i64 n = a->n;                                                                            \
    const real *A = (const real *)a->A + d * n;                                                    \
    const real *Bb = (const real *)a->B + b * a->sB[0];                                            \
    const real *Cb = (const real *)a->C + b * a->sC[0];                                            \
    for (i64 t = s; t < e; t++) {                                                                  \
        const real dt = dts[t - s], dtu = dt * us[t - s];                                          \
        const real *Bt = Bb + t * a->sB[1], *Ct = Cb + t * a->sC[1];                               \
        real y = 0;                                                                                \
        if (hs) {                                                                                  \
            real *ht = hs + (t - s) * n, *et = es + (t - s) * n;                                   \
            _Pragma("omp simd reduction(+:y)")                                                     \
            for (i64 j = 0; j < n; j++) {                                                          \
                const real ej = exp_##SUFFIX(dt * A[j]);                                           \
                const real hj = ej * h[j] + dtu * Bt[j];                                           \
                h[j] = hj;                                                                         \
                ht[j] = hj;                                                                        \
                et[j] = ej;                                                                        \
                y += hj * Ct[j];                                                                   \
            }                                                                                      \
        } else {                                                                                   \
            _Pragma("omp simd reduction(+:y)")                                                     \
            for (i64 j = 0; j < n; j++) {                                                          \
                const real hj = exp_##SUFFIX(dt * A[j]) * h[j] + dtu * Bt[j];                      \
                h[j] = hj;                                                                         \
                y += hj * Ct[j];                                                                   \
            }                                                                                      \
        }                                                                                          \
        ys[t - s] = y;                                                                             \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* Forward over rows [begin, end) of batch * dim, row = b * dim + d. Returns 0, or -1 when out of  \
 * memory. */                                                                                      \
int recbole_mamba_scan_fwd_##SUFFIX(const ScanArgs *a, i64 begin, i64 end) {                      \
    const i64 n = a->n, length = a->length;                                                        \
    real *work = (real *)malloc(sizeof(real) * (3 * length + n + 1));                              \
    if (!work) return -1;                                                                          \
    real *dts = work, *us = dts + length, *ys = us + length, *h = ys + length;                     \
    const real *z = (const real *)a->z;                                                            \
    for (i64 row = begin; row < end; row++) {                                                      \
        const i64 b = row / a->dim, d = row % a->dim;                                              \
        const real Dd = a->D ? ((const real *)a->D)[d] : (real)0;                                  \
        real *out = (real *)a->out + b * a->sout[0] + d * a->sout[1];                              \
        const real *zr = z ? z + b * a->sz[0] + d * a->sz[1] : NULL;                               \
        for (i64 j = 0; j < n; j++) h[j] = 0;                                                      \
        gather_##SUFFIX(a, b, d, 0, length, dts, us, NULL);                                        \
        states_##SUFFIX(a, b, d, 0, length, dts, us, h, NULL, NULL, ys);                           \
        _Pragma("omp simd")                                                                        \
        for (i64 t = 0; t < length; t++) {                                                         \
            const real y = ys[t] + Dd * us[t];                                                     \
            const real zt = zr ? zr[t * a->sz[2]] : (real)0;                                       \
            out[t * a->sout[2]] = zr ? y * zt * sigmoid_##SUFFIX(zt) : y;                          \
        }                                                                                          \
        memcpy((real *)a->last_state + row * n, h, sizeof(real) * n);                              \
    }                                                                                              \
    free(work);                                                                                    \
    return 0;                                                                                      \
}                                                                                                  \
                                                                                                   \
/* Backward over work items [begin, end) of groups * batch, item = group * batch + b; the group    \
 * covers channels [group * dim / groups, (group + 1) * dim / groups). Time runs in segments of    \
 * a->segment steps, last segment first, all the group's channels within a segment, so one         \
 * segment's states and dB, dC stay in cache; a first forward pass keeps each channel's state at   \
 * the segment starts. Returns 0, or -1 when out of memory. */                                     \
int recbole_mamba_scan_bwd_##SUFFIX(const ScanArgs *a, i64 begin, i64 end) {                      \
    const i64 n = a->n, length = a->length, batch = a->batch, T = a->segment;                      \
    const i64 segments = (length + T - 1) / T, channels = (a->dim + a->groups - 1) / a->groups + 1; \
    real *work = (real *)malloc(sizeof(real) * (2 * T * n + 5 * T + channels * (segments + 1) * n \
                                                + 2 * channels + n + 1));                          \
    if (!work) return -1;                                                                          \
    real *hs = work, *es = hs + T * n, *ys = es + T * n, *dts = ys + T;                            \
    real *us = dts + T, *dsp = us + T, *dys = dsp + T;                                             \
    real *starts = dys + T;                  /* (channel, segment, n): state before the segment */ \
    real *carries = starts + channels * segments * n; /* (channel, n): dL/dh flowing back */       \
    real *dDs = carries + channels * n, *dbiases = dDs + channels, *h = dbiases + channels;        \
    const real *z = (const real *)a->z;                                                            \
    for (i64 item = begin; item < end; item++) {                                                   \
        const i64 g = item / batch, b = item % batch;                                              \
        const i64 d0 = g * a->dim / a->groups, d1 = (g + 1) * a->dim / a->groups;                  \
        real *dBb = (real *)a->dB + (g * batch + b) * length * n;                                  \
        real *dCb = (real *)a->dC + (g * batch + b) * length * n;                                  \
        const real *Bb = (const real *)a->B + b * a->sB[0];                                        \
        const real *Cb = (const real *)a->C + b * a->sC[0];                                        \
        for (i64 d = d0; d < d1; d++) {                                                            \
            real *start = starts + (d - d0) * segments * n;                                        \
            for (i64 j = 0; j < n; j++) start[j] = 0, h[j] = 0;                                    \
            for (i64 k = 1; k < segments; k++) {                                                   \
                gather_##SUFFIX(a, b, d, (k - 1) * T, k * T, dts, us, NULL);                       \
                states_##SUFFIX(a, b, d, (k - 1) * T, k * T, dts, us, h, NULL, NULL, ys);          \
                memcpy(start + k * n, h, sizeof(real) * n);                                        \
            }                                                                                      \
            for (i64 j = 0; j < n; j++) carries[(d - d0) * n + j] = 0;                             \
            for (i64 j = 0; j < n; j++) ((real *)a->dA)[(b * a->dim + d) * n + j] = 0;             \
            dDs[d - d0] = 0, dbiases[d - d0] = 0;                                                  \
        }                                                                                          \
        for (i64 k = segments - 1; k >= 0; k--) {                                                  \
            const i64 s = k * T, e = s + T < length ? s + T : length;                              \
            for (i64 d = d0; d < d1; d++) {                                                        \
                const int first = d == d0; /* writes dB, dC; later channels add to them */         \
                const real *A = (const real *)a->A + d * n;                                        \
                const real Dd = a->D ? ((const real *)a->D)[d] : (real)0;                          \
                const real *dout = (const real *)a->dout + b * a->sdout[0] + d * a->sdout[1];      \
                const real *zr = z ? z + b * a->sz[0] + d * a->sz[1] : NULL;                       \
                const i64 go = b * a->sgrad[0] + d * a->sgrad[1], gt = a->sgrad[2];                \
                real *du = (real *)a->du + go, *ddelta = (real *)a->ddelta + go;                   \
                real *dz = zr ? (real *)a->dz + go : NULL;                                         \
                real *dA = (real *)a->dA + (b * a->dim + d) * n;                                   \
                real *carry = carries + (d - d0) * n;                                              \
                const real *h0 = starts + ((d - d0) * segments + k) * n;                           \
                real dD = 0, dbias = 0;                                                            \
                memcpy(h, h0, sizeof(real) * n);                                                   \
                gather_##SUFFIX(a, b, d, s, e, dts, us, dsp);                                      \
                states_##SUFFIX(a, b, d, s, e, dts, us, h, hs, es, ys);                            \
                /* through the gate: dys = dL/dy, dz */                                            \
                _Pragma("omp simd reduction(+:dD)")                                                \
                for (i64 t = s; t < e; t++) {                                                      \
                    real dy = dout[t * a->sdout[2]];                                               \
                    if (zr) {                                                                      \
                        const real zt = zr[t * a->sz[2]], sig = sigmoid_##SUFFIX(zt);              \
                        dz[t * gt] = dy * (ys[t - s] + Dd * us[t - s]) * sig * (1 + zt * (1 - sig)); \
                        dy *= zt * sig;                                                            \
                    }                                                                              \
                    dys[t - s] = dy;                                                               \
                    dD += dy * us[t - s];                                                          \
                }                                                                                  \
                for (i64 t = e - 1; t >= s; t--) {                                                 \
                    const i64 i = t - s;                                                           \
                    const real dt = dts[i], ut = us[i], dtu = dt * ut, dy = dys[i];                \
                    const real *ht = hs + i * n, *et = es + i * n;                                 \
                    const real *hprev = i ? hs + (i - 1) * n : h0;                                 \
                    const real *Bt = Bb + t * a->sB[1], *Ct = Cb + t * a->sC[1];                   \
                    real *dBt = dBb + t * n, *dCt = dCb + t * n;                                   \
                    real gA = 0, gB = 0;                                                           \
                    _Pragma("omp simd reduction(+:gA, gB)")                                        \
                    for (i64 j = 0; j < n; j++) {                                                  \
                        const real gj = carry[j] + dy * Ct[j]; /* dL/dh_t */                       \
                        const real x = gj * hprev[j] * et[j];  /* dL/d(dt_t A) */                  \
                        dCt[j] = first ? dy * ht[j] : dCt[j] + dy * ht[j];                         \
                        dBt[j] = first ? gj * dtu : dBt[j] + gj * dtu;                             \
                        dA[j] += x * dt;                                                           \
                        gA += x * A[j];                                                            \
                        gB += gj * Bt[j];                                                          \
                        carry[j] = et[j] * gj;                                                     \
                    }                                                                              \
                    const real ddt = (gA + gB * ut) * dsp[i];                                      \
                    dbias += ddt;                                                                  \
                    ddelta[t * gt] = ddt;                                                          \
                    du[t * gt] = gB * dt + dy * Dd;                                                \
                }                                                                                  \
                dDs[d - d0] += dD;                                                                 \
                dbiases[d - d0] += dbias;                                                          \
            }                                                                                      \
        }                                                                                          \
        for (i64 d = d0; d < d1; d++) {                                                            \
            ((real *)a->dD)[b * a->dim + d] = dDs[d - d0];                                         \
            ((real *)a->ddelta_bias)[b * a->dim + d] = dbiases[d - d0];                            \
        }                                                                                          \
    }                                                                                              \
    free(work);                                                                                    \
    return 0;                                                                                      \
}

DEFINE_SCAN(float, f32)
DEFINE_SCAN(double, f64)

/* Causal depthwise convolution, time-major (the mixer's conv1d with padding width - 1, cut to L):
 *   y[b, t, c] = bias[c] + sum_k w[k, c] x[b, t - width + 1 + k, c]     (x before t = 0 is zero)
 * x, y, dy, dx: (batch, L, dim) contiguous; w: (width, dim), the conv weight transposed. A work
 * item is a group of batch rows [g * batch / groups, (g + 1) * batch / groups); the backward pass
 * writes each group's dw partial sum (groups, width, dim). Channels go in blocks of CONV_BLOCK
 * whose sums stay in registers while the taps (or, for dw, the time steps) run. */
typedef struct {
    i64 batch, length, dim, width, groups;
    const void *x, *w, *bias;          /* bias may be NULL */
    void *y;                           /* forward */
    const void *dy;                    /* backward */
    void *dx, *dw;
} ConvArgs;

#define CONV_BLOCK 32
#define CONV_TIME_BLOCK 256

#define DEFINE_CONV(real, SUFFIX)                                                                  \
                                                                                                   \
/* out[c] = init[c] (or 0) + sum over taps k in [k0, k1) of w[k, c] src[k * step + c]. */          \
static void taps_##SUFFIX(const real *w, const real *src, i64 step, i64 k0, i64 k1, i64 dim,      \
                          const real *init, real *out) {                                           \
    i64 c0 = 0;                                                                                    \
    for (; c0 + CONV_BLOCK <= dim; c0 += CONV_BLOCK) {                                             \
        real acc[CONV_BLOCK];                                                                      \
        _Pragma("omp simd")                                                                        \
        for (i64 c = 0; c < CONV_BLOCK; c++) acc[c] = init ? init[c0 + c] : (real)0;               \
        for (i64 k = k0; k < k1; k++) {                                                            \
            const real *s = src + k * step + c0, *wk = w + k * dim + c0;                           \
            _Pragma("omp simd")                                                                    \
            for (i64 c = 0; c < CONV_BLOCK; c++) acc[c] += wk[c] * s[c];                           \
        }                                                                                          \
        _Pragma("omp simd")                                                                        \
        for (i64 c = 0; c < CONV_BLOCK; c++) out[c0 + c] = acc[c];                                 \
    }                                                                                              \
    for (i64 c = c0; c < dim; c++) {                                                               \
        real acc = init ? init[c] : (real)0;                                                       \
        for (i64 k = k0; k < k1; k++) acc += w[k * dim + c] * src[k * step + c];                   \
        out[c] = acc;                                                                              \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
void recbole_mamba_conv_fwd_##SUFFIX(const ConvArgs *a, i64 begin, i64 end) {                     \
    const i64 L = a->length, dim = a->dim, K = a->width;                                           \
    for (i64 g = begin; g < end; g++) {                                                            \
        for (i64 b = g * a->batch / a->groups; b < (g + 1) * a->batch / a->groups; b++) {          \
            const real *x = (const real *)a->x + b * L * dim;                                      \
            real *y = (real *)a->y + b * L * dim;                                                  \
            for (i64 t = 0; t < L; t++) {                                                          \
                const i64 k0 = t < K - 1 ? K - 1 - t : 0;                                          \
                /* tap k reads row t - K + 1 + k: rows k0.. from x + (t - K + 1 + k0) * dim */     \
                taps_##SUFFIX((const real *)a->w + k0 * dim, x + (t - K + 1 + k0) * dim, dim, 0,  \
                              K - k0, dim, (const real *)a->bias, y + t * dim);                    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* dx[b, s, c] = sum_k w[k, c] dy[b, s + width - 1 - k, c];  dw[k, c] = sum dy[b, t, c] x[b, t -   \
 * width + 1 + k, c] over the group's rows and all t, in time blocks of CONV_TIME_BLOCK steps. */  \
void recbole_mamba_conv_bwd_##SUFFIX(const ConvArgs *a, i64 begin, i64 end) {                     \
    const i64 L = a->length, dim = a->dim, K = a->width;                                           \
    const real *w = (const real *)a->w;                                                            \
    for (i64 g = begin; g < end; g++) {                                                            \
        real *dw = (real *)a->dw + g * K * dim;                                                    \
        memset(dw, 0, sizeof(real) * K * dim);                                                     \
        for (i64 b = g * a->batch / a->groups; b < (g + 1) * a->batch / a->groups; b++) {          \
            const real *x = (const real *)a->x + b * L * dim, *dy = (const real *)a->dy + b * L * dim; \
            real *dx = (real *)a->dx + b * L * dim;                                                \
            for (i64 s = 0; s < L; s++) {                                                          \
                const i64 k0 = s + K - L > 0 ? s + K - L : 0;                                      \
                /* tap k reads row s + K - 1 - k: from dy + (s + K - 1 - k0) * dim, step -dim */   \
                taps_##SUFFIX(w + k0 * dim, dy + (s + K - 1 - k0) * dim, -dim, 0, K - k0, dim,    \
                              NULL, dx + s * dim);                                                 \
            }                                                                                      \
            for (i64 t0 = 0; t0 < L; t0 += CONV_TIME_BLOCK) {                                      \
                const i64 t1 = t0 + CONV_TIME_BLOCK < L ? t0 + CONV_TIME_BLOCK : L;                \
                for (i64 k = 0; k < K; k++) {                                                      \
                    const i64 from = t0 > K - 1 - k ? t0 : K - 1 - k; /* rows x[t - K + 1 + k >= 0] */ \
                    real *dwk = dw + k * dim;                                                      \
                    i64 c0 = 0;                                                                    \
                    for (; c0 + CONV_BLOCK <= dim; c0 += CONV_BLOCK) {                             \
                        real acc[CONV_BLOCK];                                                      \
                        _Pragma("omp simd")                                                        \
                        for (i64 c = 0; c < CONV_BLOCK; c++) acc[c] = 0;                           \
                        for (i64 t = from; t < t1; t++) {                                          \
                            const real *dyt = dy + t * dim + c0, *xs = x + (t - K + 1 + k) * dim + c0; \
                            _Pragma("omp simd")                                                    \
                            for (i64 c = 0; c < CONV_BLOCK; c++) acc[c] += dyt[c] * xs[c];         \
                        }                                                                          \
                        _Pragma("omp simd")                                                        \
                        for (i64 c = 0; c < CONV_BLOCK; c++) dwk[c0 + c] += acc[c];                \
                    }                                                                              \
                    for (i64 c = c0; c < dim; c++)                                                 \
                        for (i64 t = from; t < t1; t++) dwk[c] += dy[t * dim + c] * x[(t - K + 1 + k) * dim + c]; \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}

DEFINE_CONV(float, f32)
DEFINE_CONV(double, f64)

/* One step of the Mamba mixer after in_proj, for recurrent inference (float32, contiguous):
 *   conv_state (batch, dim, width) shifts left and takes x; xs = silu(<conv_state, conv_w> + conv_b)
 *   x_dbl = x_proj_w xs (rank + 2n values: dt_low, B, C); dt = softplus(dt_w dt_low + dt_b)
 *   h = exp(dt A) h + dt xs B with A = -exp(A_log);  y = (<h, C> + D xs) silu(z)
 * As Mamba.step, in one call instead of some thirty PyTorch operations. work: dim + rank + 2n. */
typedef struct {
    i64 batch, dim, n, rank, width;
    const float *x, *z;              /* (batch, dim) */
    float *conv_state;               /* (batch, dim, width), updated */
    const float *conv_w, *conv_b;    /* (dim, width), (dim) or NULL */
    const float *x_proj_w;           /* (rank + 2n, dim) */
    const float *dt_w, *dt_b;        /* (dim, rank), (dim) */
    const float *A_log, *D;          /* (dim, n), (dim) */
    float *ssm_state;                /* (batch, dim, n), updated */
    float *y;                        /* (batch, dim) */
    float *work;
} StepArgs;

void recbole_mamba_step_f32(const StepArgs *a) {
    const i64 dim = a->dim, n = a->n, r = a->rank, w = a->width, m = r + 2 * n;
    float *xs = a->work, *x_dbl = a->work + dim;
    for (i64 b = 0; b < a->batch; b++) {
        const float *x = a->x + b * dim, *z = a->z + b * dim;
        float *conv = a->conv_state + b * dim * w, *states = a->ssm_state + b * dim * n, *y = a->y + b * dim;
        for (i64 d = 0; d < dim; d++) {
            float *c = conv + d * w;
            const float *cw = a->conv_w + d * w;
            float acc = a->conv_b ? a->conv_b[d] : 0.f;
            for (i64 j = 0; j + 1 < w; j++) c[j] = c[j + 1];
            c[w - 1] = x[d];
            for (i64 j = 0; j < w; j++) acc += c[j] * cw[j];
            xs[d] = acc * sigmoid_f32(acc);
        }
        for (i64 j = 0; j < m; j++) {
            const float *row = a->x_proj_w + j * dim;
            float acc = 0.f;
            #pragma omp simd reduction(+:acc)
            for (i64 d = 0; d < dim; d++) acc += row[d] * xs[d];
            x_dbl[j] = acc;
        }
        const float *B = x_dbl + r, *C = x_dbl + r + n;
        for (i64 d = 0; d < dim; d++) {
            float pre = a->dt_b ? a->dt_b[d] : 0.f;
            for (i64 k = 0; k < r; k++) pre += a->dt_w[d * r + k] * x_dbl[k];
            const float dt = softplus_f32(pre), dtx = dt * xs[d];
            float *h = states + d * n;
            const float *A_log = a->A_log + d * n;
            float acc = 0.f;
            #pragma omp simd reduction(+:acc)
            for (i64 k = 0; k < n; k++) {
                h[k] = exp_f32(-dt * exp_f32(A_log[k])) * h[k] + dtx * B[k];
                acc += h[k] * C[k];
            }
            const float yd = acc + (a->D ? a->D[d] : 0.f) * xs[d];
            y[d] = yd * z[d] * sigmoid_f32(z[d]);
        }
    }
}

/* MambaRec's whole step for recurrent inference (float32, batch 1, contiguous): the item's
 * embedding -> LayerNorm -> per block: in_proj -> the mixer step above -> out_proj -> (+ residual)
 * -> LayerNorm; the last block's output is written to out (d_model). One call per event where
 * PyTorch needs some twenty. Each block's mixer arguments point x, z (in_proj's two halves), y
 * and work at buffers of the caller's; the states are the session's, updated in place. */
typedef struct {
    const float *in_w, *in_b;        /* (2 dim, d_model), (2 dim) or NULL */
    StepArgs mixer;                  /* batch 1 */
    const float *out_w, *out_b;      /* (d_model, dim), (d_model) or NULL */
    const float *norm_w, *norm_b;    /* (d_model) */
    double eps;
    i64 residual;
} BlockStepArgs;

typedef struct {
    i64 d_model, n_items, n_blocks;
    const float *emb;                /* (n_items, d_model) */
    const float *norm_w, *norm_b;    /* the input LayerNorm, (d_model) */
    double eps;
    BlockStepArgs *blocks;
    float *h;                        /* work: (d_model) */
} ModelStepArgs;

static void matvec_f32(const float *w, const float *b, const float *x, i64 rows, i64 cols, float *y) {
    for (i64 r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        float acc = 0.f;
        #pragma omp simd reduction(+:acc)
        for (i64 c = 0; c < cols; c++) acc += row[c] * x[c];
        y[r] = acc + (b ? b[r] : 0.f);
    }
}

static void layer_norm_f32(const float *x, const float *w, const float *b, double eps, i64 n, float *out) {
    double mean = 0., var = 0.;
    for (i64 i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (i64 i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    const double inv = 1. / sqrt(var / (double)n + eps);
    for (i64 i = 0; i < n; i++) out[i] = (float)((x[i] - mean) * inv) * w[i] + b[i];
}

int recbole_mamba_mambarec_step_f32(const ModelStepArgs *m, i64 item, float *out) {
    if (item < 0 || item >= m->n_items) return 1;
    const i64 d = m->d_model;
    layer_norm_f32(m->emb + item * d, m->norm_w, m->norm_b, m->eps, d, out);
    for (i64 l = 0; l < m->n_blocks; l++) {
        const BlockStepArgs *blk = m->blocks + l;
        const i64 dim = blk->mixer.dim;
        matvec_f32(blk->in_w, blk->in_b, out, 2 * dim, d, (float *)blk->mixer.x);
        recbole_mamba_step_f32(&blk->mixer);
        matvec_f32(blk->out_w, blk->out_b, blk->mixer.y, d, dim, m->h);
        if (blk->residual)
            for (i64 i = 0; i < d; i++) m->h[i] += out[i];
        layer_norm_f32(m->h, blk->norm_w, blk->norm_b, blk->eps, d, out);
    }
    return 0;
}
