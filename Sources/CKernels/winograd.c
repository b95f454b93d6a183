// Winograd F(4×4, 3×3)'s transforms (Lavin & Gray 2015), one worker's share per call; see ckernels.h.
//
// Every loop runs over tiles (or input channels) with unit stride, so that the compiler vectorises it: the
// 4·tiles columns of a tile row are kept "by phase", X[p][k] = column 4k + p, and the loops that read or write
// image rows do the (de)interleaving. Each helper takes its arrays as restrict pointers, so that the compiler
// knows the many planes it writes do not overlap. The kernels are bounded by memory more than by arithmetic:
// V, M and Ŷ are 36 planes each, and U is 36 · Cout · Cin floats (9.4 MB at 256 channels).
#include "ckernels.h"

#include <stdlib.h>
#include <string.h>

// Everything below is inlined into each instruction set's copy of the kernels (the end of the file), and
// compiled for it there.
#define INLINE static inline __attribute__((always_inline))
// Eight lanes, one step: a tile row of a small image has few tiles (8 at 32×32), and AVX-512's sixteen would
// leave them all to the scalar remainder.
#define VECTOR8 _Pragma("clang loop vectorize_width(8) interleave_count(1)")

// MARK: Filter transform: U = G g Gᵀ, and its adjoint Gᵀ Ŵ G for the weight gradient

// (o0 … o5) = G·(a, b, c), element-wise: (a/4, −(a+b+c)/6, −(a−b+c)/6, a/24 + b/12 + c/6, a/24 − b/12 + c/6, c).
INLINE void g_times(
    const float *restrict a, const float *restrict b, const float *restrict c, float *restrict o0,
    float *restrict o1, float *restrict o2, float *restrict o3, float *restrict o4, float *restrict o5, int n) {
    VECTOR8
    for (int k = 0; k < n; k++) {
        float ac = a[k] + c[k];
        o0[k] = a[k] * 0.25f;
        o1[k] = (ac + b[k]) * (-1.0f / 6);
        o2[k] = (ac - b[k]) * (-1.0f / 6);
        o3[k] = a[k] * (1.0f / 24) + b[k] * (1.0f / 12) + c[k] * (1.0f / 6);
        o4[k] = a[k] * (1.0f / 24) - b[k] * (1.0f / 12) + c[k] * (1.0f / 6);
        o5[k] = c[k];
    }
}

// (o0, o1, o2) = Gᵀ·(z0 … z5), element-wise: the adjoint of g_times.
INLINE void gt_times(
    const float *restrict z0, const float *restrict z1, const float *restrict z2, const float *restrict z3,
    const float *restrict z4, const float *restrict z5, float *restrict o0, float *restrict o1, float *restrict o2,
    int n) {
    VECTOR8
    for (int k = 0; k < n; k++) {
        o0[k] = z0[k] * 0.25f - (z1[k] + z2[k]) * (1.0f / 6) + (z3[k] + z4[k]) * (1.0f / 24);
        o1[k] = (z2[k] - z1[k]) * (1.0f / 6) + (z3[k] - z4[k]) * (1.0f / 12);
        o2[k] = (z3[k] + z4[k] - z1[k] - z2[k]) * (1.0f / 6) + z5[k];
    }
}

INLINE void filter_body(
    const float *w, long in_step, int flipped, int cin, long pairs, float *u, float *scratch) {
    // g[t][ci]: the taps, input channels contiguous; then t = G·g down the three columns (t[i][c], 6×3) and
    // U = (G·tᵀ)ᵀ across each row i of t.
    float *g = scratch, *t = scratch + 9 * cin;
    for (int ci = 0; ci < cin; ci++) {
        const float *f = w + ci * in_step;
        for (int k = 0; k < 9; k++) g[k * cin + ci] = f[flipped ? 8 - k : k];
    }
#define T(i, c) (t + (3 * (i) + (c)) * cin)
    for (int c = 0; c < 3; c++)
        g_times(g + c * cin, g + (3 + c) * cin, g + (6 + c) * cin, T(0, c), T(1, c), T(2, c), T(3, c), T(4, c),
                T(5, c), cin);
    for (int i = 0; i < 6; i++) {
        float *row = u + 6 * i * pairs;
        g_times(T(i, 0), T(i, 1), T(i, 2), row, row + pairs, row + 2 * pairs, row + 3 * pairs, row + 4 * pairs,
                row + 5 * pairs, cin);
    }
#undef T
}

INLINE void filter_gradient_body(
    const float *partials, long pairs, long worker_stride, int workers, int cin, float *dw, float *scratch) {
    // z[i] = Ŵ[6i + j] for one column j (summed over the workers), t[r][j] = Gᵀ·z, then g[r][c] = Gᵀ·t[r].
    float *zsum = scratch, *t = scratch + 6 * cin, *g = scratch + 24 * cin;
    for (int j = 0; j < 6; j++) {
        const float *z[6];
        for (int i = 0; i < 6; i++) {
            const float *first = partials + (6 * i + j) * pairs;
            if (workers == 1) {
                z[i] = first;
                continue;
            }
            float *s = zsum + i * cin;
            memcpy(s, first, (size_t)cin * sizeof(float));
            for (int k = 1; k < workers; k++) {
                const float *p = first + k * worker_stride;
                for (int ci = 0; ci < cin; ci++) s[ci] += p[ci];
            }
            z[i] = s;
        }
        gt_times(z[0], z[1], z[2], z[3], z[4], z[5], t + j * cin, t + (6 + j) * cin, t + (12 + j) * cin, cin);
    }
    for (int r = 0; r < 3; r++) {
        const float *row = t + 6 * r * cin;
        gt_times(row, row + cin, row + 2 * cin, row + 3 * cin, row + 4 * cin, row + 5 * cin, g + 3 * r * cin,
                 g + (3 * r + 1) * cin, g + (3 * r + 2) * cin, cin);
    }
    // Back to the weight's layout: a transpose, which gathers would only slow down.
    _Pragma("clang loop vectorize(disable)")
    for (int ci = 0; ci < cin; ci++)
        for (int k = 0; k < 9; k++) dw[ci * 9 + k] += g[k * cin + ci];
}

// MARK: Input transform: V = Bᵀ d B

// A row x in image order by phase: x_p[k] = x[4k + p] for k < n.
INLINE void by_phase(
    const float *restrict x, float *restrict x0, float *restrict x1, float *restrict x2, float *restrict x3, int n) {
    VECTOR8
    for (int k = 0; k < n; k++) {
        x0[k] = x[4 * k];
        x1[k] = x[4 * k + 1];
        x2[k] = x[4 * k + 2];
        x3[k] = x[4 * k + 3];
    }
}

// (o0 … o5) = Bᵀ·(x0 … x5), element-wise: (4x0 − 5x2 + x4, −4(x1 + x2) + x3 + x4, 4(x1 − x2) − x3 + x4,
// −2x1 − x2 + 2x3 + x4, 2x1 − x2 − 2x3 + x4, 4x1 − 5x3 + x5). Down the six padded rows of a tile row (image
// order), then across the six columns of each tile (x_p[k] = column 4k + p).
INLINE void bt_times(
    const float *restrict x0, const float *restrict x1, const float *restrict x2, const float *restrict x3,
    const float *restrict x4, const float *restrict x5, float *restrict o0, float *restrict o1, float *restrict o2,
    float *restrict o3, float *restrict o4, float *restrict o5, int n) {
    VECTOR8
    for (int k = 0; k < n; k++) {
        float a0 = x0[k], a1 = x1[k], a2 = x2[k], a3 = x3[k], a4 = x4[k], a5 = x5[k];
        o0[k] = 4 * a0 - 5 * a2 + a4;
        o1[k] = -4 * (a1 + a2) + a3 + a4;
        o2[k] = 4 * (a1 - a2) - a3 + a4;
        o3[k] = -2 * a1 - a2 + 2 * a3 + a4;
        o4[k] = 2 * a1 - a2 - 2 * a3 + a4;
        o5[k] = 4 * a1 - 5 * a3 + a5;
    }
}

INLINE void input_body(
    const float *src, int channels, long channel_stride, long row_stride, const int32_t *rows, const int32_t *cols,
    int tiles, long ld, float *v, float *scratch) {
    const int width = 4 * tiles + 2;
    const long stride = (long)channels * ld;
    // d: the six padded rows in image order; b: the six rows of Bᵀ d (and two floats over, read and not
    // used); x: one row of it as its tiles' columns x_p[k] = b[4k + p], p < 6 (tiles overlap: columns 4 and 5
    // of one are 0 and 1 of the next), each written whole so that bt_times reads back exactly what was
    // stored (a load that straddles two stores waits for both), and two more, not used: by_phase splits four
    // at a time, since a loop that reads six columns of every four would leave a small row to scalar code.
    float *d = scratch, *b = scratch + 6 * width, *x = scratch + 12 * width + 2;
    const int phase = tiles;
    // The run of padded columns that are consecutive source columns (all but the padding at the edges),
    // copied whole.
    int lo = 0;
    while (lo + 1 < width && !(cols[lo] >= 0 && cols[lo + 1] == cols[lo] + 1)) lo++;
    int hi = lo + 1;
    while (hi < width && cols[hi] == cols[hi - 1] + 1) hi++;
    if (cols[lo] < 0) lo = hi = width;
    for (int c = 0; c < channels; c++) {
        const float *plane = src + c * channel_stride;
        for (int i = 0; i < 6; i++) {
            float *dst = d + i * width;
            if (rows[i] < 0) {
                memset(dst, 0, (size_t)width * sizeof(float));
                continue;
            }
            const float *row = plane + rows[i] * row_stride;
            for (int q = 0; q < lo; q++) dst[q] = cols[q] < 0 ? 0 : row[cols[q]];
            memcpy(dst + lo, row + (lo < width ? cols[lo] : 0), (size_t)(hi - lo) * sizeof(float));
            for (int q = hi; q < width; q++) dst[q] = cols[q] < 0 ? 0 : row[cols[q]];
        }
        bt_times(d, d + width, d + 2 * width, d + 3 * width, d + 4 * width, d + 5 * width, b, b + width,
                 b + 2 * width, b + 3 * width, b + 4 * width, b + 5 * width, width);
        for (int i = 0; i < 6; i++) {
            const float *row = b + i * width;
            by_phase(row, x, x + phase, x + 2 * phase, x + 3 * phase, tiles);
            by_phase(row + 4, x + 4 * phase, x + 5 * phase, x + 6 * phase, x + 7 * phase, tiles);
            float *o = v + 6 * i * stride + c * ld;
            bt_times(x, x + phase, x + 2 * phase, x + 3 * phase, x + 4 * phase, x + 5 * phase, o, o + stride,
                     o + 2 * stride, o + 3 * stride, o + 4 * stride, o + 5 * stride, tiles);
        }
    }
}

// MARK: Output transform: Y = Aᵀ M A

// M A for one row i of the tiles: from the six positions (i, j) of tile k, the four columns u_p[k].
INLINE void a_across(
    const float *restrict m0, const float *restrict m1, const float *restrict m2, const float *restrict m3,
    const float *restrict m4, const float *restrict m5, float *restrict u0, float *restrict u1, float *restrict u2,
    float *restrict u3, int n) {
    VECTOR8
    for (int k = 0; k < n; k++) {
        u0[k] = m0[k] + m1[k] + m2[k] + m3[k] + m4[k];
        u1[k] = m1[k] - m2[k] + 2 * (m3[k] - m4[k]);
        u2[k] = m1[k] + m2[k] + 4 * (m3[k] + m4[k]);
        u3[k] = m1[k] - m2[k] + 8 * (m3[k] - m4[k]) + m5[k];
    }
}

// Row r of Aᵀ (M A) + bias, from the six rows u_i (each by phase, ld n), written in image order: `full` whole
// tiles, then the first `rest` columns of the next.
INLINE void at_down(
    int r, const float *restrict u, int n, float bias, float *restrict dst, int full, int rest) {
    const float *u0 = u, *u1 = u + 4 * n, *u2 = u + 8 * n, *u3 = u + 12 * n, *u4 = u + 16 * n, *u5 = u + 20 * n;
#define AT(q)                                                                                                     \
    (r == 0   ? u0[q] + u1[q] + u2[q] + u3[q] + u4[q]                                                             \
     : r == 1 ? u1[q] - u2[q] + 2 * (u3[q] - u4[q])                                                               \
     : r == 2 ? u1[q] + u2[q] + 4 * (u3[q] + u4[q])                                                               \
              : u1[q] - u2[q] + 8 * (u3[q] - u4[q]) + u5[q])
    VECTOR8
    for (int k = 0; k < full; k++)
        for (int p = 0; p < 4; p++) dst[4 * k + p] = AT(p * n + k) + bias;
    for (int p = 0; p < rest; p++) dst[4 * full + p] = AT(p * n + full) + bias;
#undef AT
}

INLINE void output_body(
    const float *m, int channels, long ld, int tiles, const float *bias, float *out, long plane_stride, long ow,
    int valid_rows, int valid_width, float *scratch) {
    const long stride = (long)channels * ld;
    const int n = tiles, full = valid_width / 4, rest = valid_width % 4;
    for (int c = 0; c < channels; c++) {
        const float b = bias ? bias[c] : 0;
        // u[i][p][k]: row i of M A, by phase.
        for (int i = 0; i < 6; i++) {
            const float *row = m + 6 * i * stride + c * ld;
            float *u = scratch + 4 * i * n;
            a_across(row, row + stride, row + 2 * stride, row + 3 * stride, row + 4 * stride, row + 5 * stride, u,
                     u + n, u + 2 * n, u + 3 * n, n);
        }
        float *plane = out + c * plane_stride;
        for (int r = 0; r < valid_rows; r++) {
            // One loop per row of Aᵀ, so that each is a plain sum the compiler vectorises.
            switch (r) {
            case 0: at_down(0, scratch, n, b, plane, full, rest); break;
            case 1: at_down(1, scratch, n, b, plane + ow, full, rest); break;
            case 2: at_down(2, scratch, n, b, plane + 2 * ow, full, rest); break;
            default: at_down(3, scratch, n, b, plane + 3 * ow, full, rest); break;
            }
        }
    }
}

// MARK: Gradient transform: Ŷ = A dy Aᵀ

// (o0 … o5) = A·(y0 … y3), element-wise: (y0, y0+y1+y2+y3, y0−y1+y2−y3, y0+2y1+4y2+8y3, y0−2y1+4y2−8y3, y3).
// Down the four rows of a tile row (image order), then across the four columns of each tile (by phase).
INLINE void a_times(
    const float *restrict y0, const float *restrict y1, const float *restrict y2, const float *restrict y3,
    float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3, float *restrict o4,
    float *restrict o5, int n) {
    VECTOR8
    for (int k = 0; k < n; k++) {
        o0[k] = y0[k];
        o1[k] = y0[k] + y1[k] + y2[k] + y3[k];
        o2[k] = y0[k] - y1[k] + y2[k] - y3[k];
        o3[k] = y0[k] + 2 * y1[k] + 4 * y2[k] + 8 * y3[k];
        o4[k] = y0[k] - 2 * y1[k] + 4 * y2[k] - 8 * y3[k];
        o5[k] = y3[k];
    }
}

INLINE void gradient_body(
    const float *dy, int channels, long plane_stride, long ow, int valid_rows, int valid_width, int tiles, long ld,
    float *yhat, float *scratch) {
    const long stride = (long)channels * ld;
    const int n = tiles, width = 4 * tiles;
    // d: the four rows of the tiles, zero past the edges; a: the six rows of A d; x: one of them by phase.
    float *d = scratch, *a = scratch + 16 * n, *x = scratch + 40 * n;
    for (int c = 0; c < channels; c++) {
        for (int r = 0; r < 4; r++) {
            float *dst = d + r * width;
            int valid = r < valid_rows ? valid_width : 0;
            if (valid) memcpy(dst, dy + c * plane_stride + r * ow, (size_t)valid * sizeof(float));
            memset(dst + valid, 0, (size_t)(width - valid) * sizeof(float));
        }
        a_times(d, d + width, d + 2 * width, d + 3 * width, a, a + width, a + 2 * width, a + 3 * width,
                a + 4 * width, a + 5 * width, width);
        for (int i = 0; i < 6; i++) {
            by_phase(a + i * width, x, x + n, x + 2 * n, x + 3 * n, n);
            float *o = yhat + 6 * i * stride + c * ld;
            a_times(x, x + n, x + 2 * n, x + 3 * n, o, o + stride, o + 2 * stride, o + 3 * stride, o + 4 * stride,
                    o + 5 * stride, n);
        }
    }
}

// MARK: One copy of the kernels per instruction set

#define KERNELS(suffix, label, attributes)                                                                        \
    attributes static void filter_##suffix(                                                                       \
        const float *w, long in_step, int flipped, int cin, long pairs, float *u, float *scratch) {               \
        filter_body(w, in_step, flipped, cin, pairs, u, scratch);                                                 \
    }                                                                                                             \
    attributes static void filter_gradient_##suffix(                                                              \
        const float *partials, long pairs, long worker_stride, int workers, int cin, float *dw, float *scratch) { \
        filter_gradient_body(partials, pairs, worker_stride, workers, cin, dw, scratch);                          \
    }                                                                                                             \
    attributes static void input_##suffix(                                                                        \
        const float *src, int channels, long channel_stride, long row_stride, const int32_t *rows,                \
        const int32_t *cols, int tiles, long ld, float *v, float *scratch) {                                      \
        input_body(src, channels, channel_stride, row_stride, rows, cols, tiles, ld, v, scratch);                 \
    }                                                                                                             \
    attributes static void output_##suffix(                                                                       \
        const float *m, int channels, long ld, int tiles, const float *bias, float *out, long plane_stride,       \
        long ow, int valid_rows, int valid_width, float *scratch) {                                               \
        output_body(m, channels, ld, tiles, bias, out, plane_stride, ow, valid_rows, valid_width, scratch);       \
    }                                                                                                             \
    attributes static void gradient_##suffix(                                                                     \
        const float *dy, int channels, long plane_stride, long ow, int valid_rows, int valid_width, int tiles,    \
        long ld, float *yhat, float *scratch) {                                                                   \
        gradient_body(dy, channels, plane_stride, ow, valid_rows, valid_width, tiles, ld, yhat, scratch);         \
    }                                                                                                             \
    static const ck_winograd_kernels kernels_##suffix = {                                                         \
        label, filter_##suffix, filter_gradient_##suffix, input_##suffix, output_##suffix, gradient_##suffix};

KERNELS(baseline, "baseline", )
#if defined(__x86_64__)
KERNELS(avx2, "avx2", __attribute__((target("avx2,fma"))))
KERNELS(avx512, "avx512", __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))))
#endif

const ck_winograd_kernels *ck_winograd_kernels_named(const char *name) {
    if (strcmp(name, "baseline") == 0) return &kernels_baseline;
#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx2") == 0) return avx2 ? &kernels_avx2 : NULL;
    if (strcmp(name, "avx512") == 0)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
                   ? &kernels_avx512
                   : NULL;
#endif
    return NULL;
}

const ck_winograd_kernels *ck_winograd_kernels_best(void) {
    const char *wanted = getenv("CYCLEGAND_KERNELS");
    if (wanted && *wanted) {
        const ck_winograd_kernels *k = ck_winograd_kernels_named(wanted);
        if (k) return k;
    }
    static const char *const fastest_first[] = {"avx512", "avx2"};
    for (size_t i = 0; i < sizeof fastest_first / sizeof *fastest_first; i++) {
        const ck_winograd_kernels *k = ck_winograd_kernels_named(fastest_first[i]);
        if (k) return k;
    }
    return &kernels_baseline;
}
