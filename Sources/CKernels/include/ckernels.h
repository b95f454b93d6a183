#ifndef CKERNELS_H
#define CKERNELS_H
#include <stdint.h>

// The inner loops of Winograd F(4×4, 3×3) (Tensor/Winograd.swift), in C so that they are compiled once per
// instruction set (AVX-512, AVX2 with FMA, baseline x86-64) and the one the CPU has is picked at run time. The
// Swift side owns the buffers, the threads and the tile geometry; each call is one worker's share: one output
// channel, or one segment of a tile row. ξ = 6i + j is the position in the 6×6 transformed tile; "stride" is
// the distance between two positions' planes of V, M or Ŷ (channels · ld). Each kernel takes a scratch buffer
// of its own, of the size its ck_winograd_*_scratch function gives.
typedef struct ck_winograd_kernels {
    // "avx512", "avx2" or "baseline".
    const char *name;

    // U[ξ·pairs + ci] = (G g Gᵀ)[ξ] for ci in 0 ..< cin, where tap t of filter g(ci) is w[ci·in_step + t], or
    // w[ci·in_step + 8 − t] when `flipped`.
    void (*filter)(const float *w, long in_step, int flipped, int cin, long pairs, float *u, float *scratch);

    // dW[ci·9 + t] += (Gᵀ Ŵ G)[t] for ci in 0 ..< cin, Ŵ[ξ] = Σ_k partials[k·worker_stride + ξ·pairs + ci]
    // summed over the `workers` partial sums in order.
    void (*filter_gradient)(
        const float *partials, long pairs, long worker_stride, int workers, int cin, float *dw, float *scratch);

    // V[ξ·stride + c·ld + k] = (Bᵀ d B)[ξ] for the 6×6 input tile d of tile k (k < tiles) of channel c, every
    // channel. Plane c starts at src + c·channel_stride; `rows` holds the six padded rows' source rows and
    // `cols` the 4·tiles + 2 padded columns' source columns (< 0: zero).
    void (*input)(
        const float *src, int channels, long channel_stride, long row_stride, const int32_t *rows,
        const int32_t *cols, int tiles, long ld, float *v, float *scratch);

    // Y = Aᵀ M A + bias for tiles k < tiles of every channel c, from M[ξ·stride + c·ld + k]: written at
    // out + c·plane_stride + r·ow + q for the valid_rows × valid_width pixels the tiles cover inside the
    // output. `bias` may be NULL.
    void (*output)(
        const float *m, int channels, long ld, int tiles, const float *bias, float *out, long plane_stride,
        long ow, int valid_rows, int valid_width, float *scratch);

    // Ŷ[ξ·stride + c·ld + k] = (A dy Aᵀ)[ξ] for the 4×4 tile dy of tile k of channel c, read at
    // dy + c·plane_stride + r·ow + q, zero outside valid_rows × valid_width.
    void (*gradient)(
        const float *dy, int channels, long plane_stride, long ow, int valid_rows, int valid_width, int tiles,
        long ld, float *yhat, float *scratch);
} ck_winograd_kernels;

static inline long ck_winograd_filter_scratch(int cin) { return 27L * cin; }
static inline long ck_winograd_filter_gradient_scratch(int cin) { return 33L * cin; }
static inline long ck_winograd_input_scratch(int tiles) { return 56L * tiles + 26; }
static inline long ck_winograd_output_scratch(int tiles) { return 24L * tiles; }
static inline long ck_winograd_gradient_scratch(int tiles) { return 44L * tiles; }

// The kernels compiled for `name` ("avx512", "avx2", "baseline"), or NULL if this CPU cannot run them.
const ck_winograd_kernels *ck_winograd_kernels_named(const char *name);

// The fastest kernels this CPU runs, or those the environment variable CYCLEGAND_KERNELS names if it can
// run them (to measure or test a slower set on a faster CPU).
const ck_winograd_kernels *ck_winograd_kernels_best(void);

#endif
