/* One-pass CPU statistics for watch()'s logging steps.
 *
 * Eager PyTorch reads a tensor once per statistic (a dot product, |x| into a
 * buffer, its sum, its max, a NaN/Inf count), one dispatched call each. These
 * kernels read each float32 tensor ONCE for all its statistics, in one call
 * for a whole list, with the GIL released (the writer thread runs meanwhile);
 * the parameter pass and the output statistics are split into tasks that
 * PyTorch's own OpenMP threads share (see CHUNK), their results the same
 * whatever the thread count.
 *
 * Numerics: float32 lanes (16 at a time) summed into doubles every BLOCK
 * elements, so results are at least as accurate as PyTorch's float32 ones.
 * NaN and Inf behave as PyTorch's: sums become NaN/Inf, and a NaN anywhere
 * makes the maximum (and minimum) NaN, as amax/amin do.
 *
 * Inputs are objects with the buffer protocol (a CPU tensor's .numpy()):
 * C-contiguous float32. The Python side (fused.py) decides which tensors
 * qualify and falls back to PyTorch otherwise.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#endif

#define BLOCK 1024 /* elements per float32 partial sum (64 per lane) */

/* Test seam (portable_only()): the portable kernels even where AVX2 and F16C
 * exist, so that a machine with them also tests what other CPUs run. */
static int portable_only = 0;

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
/* An AVX2 build beside the baseline one, picked at load time (glibc ifunc),
 * for the helpers without a hand-written AVX2 form. The three kernels that
 * have one (below) dispatch to it themselves, so their portable forms are
 * built for the baseline only. */
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

#if defined(__GNUC__) || defined(__clang__)
#define HAVE_VECTORS 1
/* 16-byte vectors: what SSE2 and NEON hold natively (wider GCC vectors
 * without a matching instruction set are lowered element by element, ~18x
 * slower); AVX2 CPUs take the hand-written forms below. */
typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));
#define LANES 4

static inline __attribute__((always_inline)) vf splat(float value) {
    vf v;
    for (int i = 0; i < LANES; i++) v[i] = value;
    return v;
}

static inline __attribute__((always_inline)) vf load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) vf vabs(vf v) {
    const vi mask = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    return (vf)((vi)v & mask);
}

/* where(take, a, b) for comparison masks (all bits set or clear). */
static inline __attribute__((always_inline)) vf pick(vi take, vf a, vf b) {
    return (vf)(((vi)a & take) | ((vi)b & ~take));
}

static inline __attribute__((always_inline)) double hsum(vf v) {
    double s = 0.0;
    for (int i = 0; i < LANES; i++) s += v[i];
    return s;
}

static inline __attribute__((always_inline)) float hmax(vf v, float start) {
    for (int i = 0; i < LANES; i++) start = v[i] > start ? v[i] : start;
    return start;
}

static inline __attribute__((always_inline)) float hmin(vf v, float start) {
    for (int i = 0; i < LANES; i++) start = v[i] < start ? v[i] : start;
    return start;
}

static inline __attribute__((always_inline)) int64_t hcount(vi v) {
    int64_t s = 0;
    for (int i = 0; i < LANES; i++) s -= v[i]; /* masks are -1 */
    return s;
}
#else
#define HAVE_VECTORS 0
#endif

/* -- kernels (no Python objects: they run without the GIL) ---------------- */

/* NaN/Inf elements of x (a second pass, only where the sums say so). */
static int64_t count_nonfinite(const float *x, Py_ssize_t n) {
    int64_t bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) bad += !(x[i] - x[i] == 0.0f);
    return bad;
}

/* The elements [i, n) after a vector loop, then gradient_kernel's results. */
static void gradient_tail(const float *x, Py_ssize_t i, Py_ssize_t n, double squares, double sums,
                          float top, double out[4]) {
    for (; i < n; i++) {
        float v = x[i], a = fabsf(v);
        squares += (double)v * v;
        sums += a;
        if (a > top) top = a;
    }
    out[0] = squares;
    out[1] = sums;
    out[2] = isnan(squares) ? NAN : top; /* a NaN makes the sum of squares NaN */
    /* A NaN or Inf makes the sums NaN or Inf: count only then. */
    out[3] = isfinite(squares) && isfinite(sums) ? 0.0 : (double)count_nonfinite(x, n);
}

/* out: sum of squares, sum of |x|, max |x|, count of NaN/Inf. */
static void gradient_kernel_generic(const float *x, Py_ssize_t n, double out[4]) {
    double squares = 0.0, sums = 0.0;
    float top = 0.0f;
    Py_ssize_t i = 0;
#if HAVE_VECTORS
    /* Four independent accumulators of each kind: the max's compare and
     * select would otherwise chain one iteration to the next. */
    vf top_a = {0}, top_b = {0}, top_c = {0}, top_d = {0};
    while (i + 4 * LANES <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        vf sq_a = {0}, sq_b = {0}, sq_c = {0}, sq_d = {0};
        vf ab_a = {0}, ab_b = {0}, ab_c = {0}, ab_d = {0};
        for (; i + 4 * LANES <= end; i += 4 * LANES) {
            vf a = load(x + i), b = load(x + i + LANES);
            vf c = load(x + i + 2 * LANES), d = load(x + i + 3 * LANES);
            vf aa = vabs(a), bb = vabs(b), cc = vabs(c), dd = vabs(d);
            sq_a += a * a;
            sq_b += b * b;
            sq_c += c * c;
            sq_d += d * d;
            ab_a += aa;
            ab_b += bb;
            ab_c += cc;
            ab_d += dd;
            top_a = pick(aa > top_a, aa, top_a); /* NaN compares false */
            top_b = pick(bb > top_b, bb, top_b);
            top_c = pick(cc > top_c, cc, top_c);
            top_d = pick(dd > top_d, dd, top_d);
        }
        squares += hsum(sq_a) + hsum(sq_b) + hsum(sq_c) + hsum(sq_d);
        sums += hsum(ab_a) + hsum(ab_b) + hsum(ab_c) + hsum(ab_d);
    }
    top = hmax(top_d, hmax(top_c, hmax(top_b, hmax(top_a, top))));
#endif
    gradient_tail(x, i, n, squares, sums, top, out);
}

/* out: sum of squares of old, sum of squares of (old - new). */
static void update_kernel_generic(const float *old, const float *new_, Py_ssize_t n, double out[2]) {
    double base = 0.0, delta = 0.0;
    Py_ssize_t i = 0;
#if HAVE_VECTORS
    while (i + 2 * LANES <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        vf base_a = {0}, base_b = {0}, delta_a = {0}, delta_b = {0};
        for (; i + 2 * LANES <= end; i += 2 * LANES) {
            vf a = load(old + i), b = load(old + i + LANES);
            vf da = a - load(new_ + i), db = b - load(new_ + i + LANES);
            base_a += a * a;
            base_b += b * b;
            delta_a += da * da;
            delta_b += db * db;
        }
        base += hsum(base_a) + hsum(base_b);
        delta += hsum(delta_a) + hsum(delta_b);
    }
#endif
    for (; i < n; i++) {
        float d = old[i] - new_[i];
        base += (double)old[i] * old[i];
        delta += (double)d * d;
    }
    out[0] = base;
    out[1] = delta;
}

/* The dispatching forms (AVX2 where the CPU has it), defined below. */
static void update_kernel(const float *old, const float *new_, Py_ssize_t n, double out[2]);

/* A heatmap grid to pool a matrix into (see pooling.py): cells are block
 * SUMS along an axis that divides evenly and adaptive-pooling MEANS along
 * one that does not (the bins PyTorch's adaptive_avg_pool2d uses). */
typedef struct {
    float *out;                 /* out_rows x out_cols, row-major */
    Py_ssize_t rows, cols;      /* the matrix view */
    Py_ssize_t out_rows, out_cols;
} Grid;

static void bin_bounds(Py_ssize_t size, Py_ssize_t out, Py_ssize_t i, Py_ssize_t *start,
                       Py_ssize_t *end) {
    *start = (i * size) / out;
    *end = ((i + 1) * size + out - 1) / out;
}

/* A bin's [start, end) along an axis. The column bins of a matrix are
 * worked out once: two integer divisions per cell and row bin cost more
 * than the pooling's additions. */
typedef struct {
    Py_ssize_t start, end;
} Bin;

static void column_bins(const Grid *g, Bin *bins) {
    for (Py_ssize_t j = 0; j < g->out_cols; j++) bin_bounds(g->cols, g->out_cols, j, &bins[j].start, &bins[j].end);
}

MULTIVERSION
static void add_row(float *restrict acc, const float *restrict row, Py_ssize_t n) {
    for (Py_ssize_t c = 0; c < n; c++) acc[c] += row[c];
}

/* update_kernel over one matrix row, adding the row of `new_` into `acc`
 * in the same pass; its two sums are added to out. */
static void update_row_generic(const float *old, const float *new_, float *restrict acc, Py_ssize_t n,
                               double out[2]) {
    double base = 0.0, delta = 0.0;
    Py_ssize_t i = 0;
#if HAVE_VECTORS
    while (i + LANES <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        vf base_v = {0}, delta_v = {0};
        for (; i + LANES <= end; i += LANES) {
            vf a = load(old + i), w = load(new_ + i);
            vf d = a - w;
            vf sum = load(acc + i) + w;
            base_v += a * a;
            delta_v += d * d;
            memcpy(acc + i, &sum, sizeof sum);
        }
        base += hsum(base_v);
        delta += hsum(delta_v);
    }
#endif
    for (; i < n; i++) {
        float d = old[i] - new_[i];
        base += (double)old[i] * old[i];
        delta += (double)d * d;
        acc[i] += new_[i];
    }
    out[0] += base;
    out[1] += delta;
}

static void update_row(const float *old, const float *new_, float *acc, Py_ssize_t n, double out[2]);

/* A row bin's sums in `acc` (cols floats) into its cells. */
static void finish_row_bin(const Grid *g, const float *acc, const Bin *bins, Py_ssize_t bin,
                           Py_ssize_t rows_in_bin) {
    int rows_even = g->rows % g->out_rows == 0, cols_even = g->cols % g->out_cols == 0;
    float *cells = g->out + bin * g->out_cols;
    for (Py_ssize_t j = 0; j < g->out_cols; j++) {
        /* Four partial sums: one chain of dependent additions per cell
         * made this loop cost more than the rows' pass. */
        float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        Py_ssize_t c = bins[j].start;
        for (; c + 4 <= bins[j].end; c += 4)
            for (int t = 0; t < 4; t++) part[t] += acc[c + t];
        for (; c < bins[j].end; c++) part[0] += acc[c];
        float cell = (part[0] + part[1]) + (part[2] + part[3]);
        if (!cols_even) cell /= (float)(bins[j].end - bins[j].start);
        if (!rows_even) cell /= (float)rows_in_bin;
        cells[j] = cell;
    }
}

/* update_kernel over a matrix, pooling `new_` into `g` in the same pass:
 * each row is read once for both (a row shared by two bins twice, from
 * cache). With `old` NULL, only the pooling (out stays 0). Scratch: `acc`
 * cols floats, `bins` out_cols bins. */
/* update_pool_kernel's work for the row bins [from, to): their cells, and
 * the update sums (added to out) of the rows from the first bin's start to
 * the next range's (each row in exactly one range, so the ranges' sums add
 * up to the whole matrix's). */
static void update_pool_bins(const float *old, const float *new_, const Grid *g, float *acc, Bin *bins,
                             Py_ssize_t from, Py_ssize_t to, double out[2]) {
    Py_ssize_t counted, stop, unused; /* rows [counted, stop) go into the update sums */
    bin_bounds(g->rows, g->out_rows, from, &counted, &unused);
    if (to < g->out_rows)
        bin_bounds(g->rows, g->out_rows, to, &stop, &unused);
    else
        stop = g->rows;
    column_bins(g, bins);
    for (Py_ssize_t i = from; i < to; i++) {
        Py_ssize_t start, end;
        bin_bounds(g->rows, g->out_rows, i, &start, &end);
        memset(acc, 0, (size_t)g->cols * sizeof(float));
        for (Py_ssize_t r = start; r < end; r++) {
            const float *row = new_ + r * g->cols;
            if (old != NULL && r >= counted && r < stop) {
                update_row(old + r * g->cols, row, acc, g->cols, out);
                counted = r + 1;
            } else {
                add_row(acc, row, g->cols);
            }
        }
        finish_row_bin(g, acc, bins, i, end - start);
    }
}

static void update_pool_kernel(const float *old, const float *new_, const Grid *g, float *acc, Bin *bins,
                               double out[2]) {
    out[0] = out[1] = 0.0;
    update_pool_bins(old, new_, g, acc, bins, 0, g->out_rows, out);
}

/* The elements [i, n) after a vector loop, then output_kernel's sums:
 * sum of squares, min and max of the non-NaN elements, nonzero count. */
static void output_tail(const float *x, Py_ssize_t i, Py_ssize_t n, double squares, float low,
                        float high, int64_t nonzero, double out[4]) {
    for (; i < n; i++) {
        float v = x[i];
        squares += (double)v * v;
        if (v < low) low = v;
        if (v > high) high = v;
        if (v != 0.0f) nonzero++;
    }
    out[0] = squares;
    out[1] = low;
    out[2] = high;
    out[3] = (double)nonzero;
}

/* output_kernel's sums of a whole array as its statistics: L2 norm, min,
 * max (NaN where an element is NaN, as PyTorch's amin/amax), nonzero count. */
static void output_finish(double out[4]) {
    int nan = isnan(out[0]);
    out[0] = sqrt(out[0]);
    if (nan) out[1] = out[2] = NAN;
}

/* out: output_tail's sums (see output_finish). n > 0. */
static void output_kernel_generic(const float *x, Py_ssize_t n, double out[4]) {
    double squares = 0.0;
    float low = INFINITY, high = -INFINITY;
    int64_t nonzero = 0;
    Py_ssize_t i = 0;
#if HAVE_VECTORS
    /* Two independent accumulators of each kind (see gradient_kernel). */
    const vf zero = {0};
    vf low_a = splat(INFINITY);
    vf low_b = low_a, high_a = -low_a, high_b = -low_a;
    while (i + 2 * LANES <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        vf sq_a = {0}, sq_b = {0};
        vi count_a = {0}, count_b = {0};
        for (; i + 2 * LANES <= end; i += 2 * LANES) {
            vf a = load(x + i), b = load(x + i + LANES);
            sq_a += a * a;
            sq_b += b * b;
            low_a = pick(a < low_a, a, low_a);
            low_b = pick(b < low_b, b, low_b);
            high_a = pick(a > high_a, a, high_a);
            high_b = pick(b > high_b, b, high_b);
            count_a += (a != zero); /* NaN != 0 */
            count_b += (b != zero);
        }
        squares += hsum(sq_a) + hsum(sq_b);
        nonzero += hcount(count_a) + hcount(count_b);
    }
    low = hmin(low_b, hmin(low_a, low));
    high = hmax(high_b, hmax(high_a, high));
#endif
    output_tail(x, i, n, squares, low, high, nonzero, out);
}

/* -- AVX2 forms of the two compare-heavy kernels ---------------------------
 *
 * Portable vector C has no min/max: a compare and a select stand in (three
 * instructions, one of them two uops), which made the kernels above
 * compute-bound at ~10 GB/s. On x86-64 with AVX2, vminps/vmaxps do it in
 * one. Same results: min/max ignore NaN here as the selects do (a NaN is
 * reported through the sum of squares below), sums are summed per block
 * into doubles.
 */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define HAVE_AVX2_KERNELS 1

/* Block partials go into double (and 64-bit count) vectors: a few
 * instructions, no stores (a per-block horizontal sum cost more than the
 * block's own loads). */
#define AVX2_INLINE static inline __attribute__((target("avx2"), always_inline))

AVX2_INLINE __m256d widen_add(__m256d acc, __m256 v) {
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

AVX2_INLINE __m256i widen_count(__m256i acc, __m256i masks) { /* masks are -1 */
    acc = _mm256_sub_epi64(acc, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(masks)));
    return _mm256_sub_epi64(acc, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(masks, 1)));
}

AVX2_INLINE double total_pd(__m256d v) {
    double lanes[4];
    _mm256_storeu_pd(lanes, v);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

AVX2_INLINE int64_t total_epi64(__m256i v) {
    int64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, v);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

AVX2_INLINE float extreme(__m256 v, int want_max) {
    float lanes[8];
    _mm256_storeu_ps(lanes, v);
    float r = lanes[0];
    for (int i = 1; i < 8; i++) r = want_max ? (lanes[i] > r ? lanes[i] : r) : (lanes[i] < r ? lanes[i] : r);
    return r;
}

__attribute__((target("avx2")))
static void gradient_kernel_avx2(const float *x, Py_ssize_t n, double out[4]) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 top[4];
    __m256d squares_d = _mm256_setzero_pd(), sums_d = _mm256_setzero_pd();
    for (int j = 0; j < 4; j++) top[j] = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    while (i + 32 <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        __m256 sq[4], ab[4];
        for (int j = 0; j < 4; j++) sq[j] = ab[j] = _mm256_setzero_ps();
        for (; i + 32 <= end; i += 32) {
            for (int j = 0; j < 4; j++) {
                __m256 v = _mm256_loadu_ps(x + i + 8 * j);
                __m256 a = _mm256_andnot_ps(sign, v);
                sq[j] = _mm256_add_ps(sq[j], _mm256_mul_ps(v, v));
                ab[j] = _mm256_add_ps(ab[j], a);
                top[j] = _mm256_max_ps(a, top[j]); /* a NaN a keeps top */
            }
        }
        squares_d = widen_add(squares_d, _mm256_add_ps(_mm256_add_ps(sq[0], sq[1]), _mm256_add_ps(sq[2], sq[3])));
        sums_d = widen_add(sums_d, _mm256_add_ps(_mm256_add_ps(ab[0], ab[1]), _mm256_add_ps(ab[2], ab[3])));
    }
    double squares = total_pd(squares_d), sums = total_pd(sums_d);
    float biggest = extreme(_mm256_max_ps(_mm256_max_ps(top[0], top[1]), _mm256_max_ps(top[2], top[3])), 1);
    gradient_tail(x, i, n, squares, sums, biggest, out);
}

__attribute__((target("avx2")))
static void update_kernel_avx2(const float *old, const float *new_, Py_ssize_t n, double out[2]) {
    __m256d base_d = _mm256_setzero_pd(), delta_d = _mm256_setzero_pd();
    Py_ssize_t i = 0;
    while (i + 32 <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        __m256 base[4], delta[4];
        for (int j = 0; j < 4; j++) base[j] = delta[j] = _mm256_setzero_ps();
        for (; i + 32 <= end; i += 32) {
            for (int j = 0; j < 4; j++) {
                __m256 a = _mm256_loadu_ps(old + i + 8 * j);
                __m256 d = _mm256_sub_ps(a, _mm256_loadu_ps(new_ + i + 8 * j));
                base[j] = _mm256_add_ps(base[j], _mm256_mul_ps(a, a));
                delta[j] = _mm256_add_ps(delta[j], _mm256_mul_ps(d, d));
            }
        }
        base_d = widen_add(base_d, _mm256_add_ps(_mm256_add_ps(base[0], base[1]), _mm256_add_ps(base[2], base[3])));
        delta_d = widen_add(delta_d, _mm256_add_ps(_mm256_add_ps(delta[0], delta[1]), _mm256_add_ps(delta[2], delta[3])));
    }
    double base_sum = total_pd(base_d), delta_sum = total_pd(delta_d);
    for (; i < n; i++) {
        float d = old[i] - new_[i];
        base_sum += (double)old[i] * old[i];
        delta_sum += (double)d * d;
    }
    out[0] = base_sum;
    out[1] = delta_sum;
}

__attribute__((target("avx2")))
static void update_row_avx2(const float *old, const float *new_, float *restrict acc, Py_ssize_t n,
                            double out[2]) {
    __m256d base_d = _mm256_setzero_pd(), delta_d = _mm256_setzero_pd();
    Py_ssize_t i = 0;
    while (i + 16 <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        __m256 base[2], delta[2];
        for (int j = 0; j < 2; j++) base[j] = delta[j] = _mm256_setzero_ps();
        for (; i + 16 <= end; i += 16) {
            for (int j = 0; j < 2; j++) {
                __m256 a = _mm256_loadu_ps(old + i + 8 * j), w = _mm256_loadu_ps(new_ + i + 8 * j);
                __m256 d = _mm256_sub_ps(a, w);
                base[j] = _mm256_add_ps(base[j], _mm256_mul_ps(a, a));
                delta[j] = _mm256_add_ps(delta[j], _mm256_mul_ps(d, d));
                _mm256_storeu_ps(acc + i + 8 * j, _mm256_add_ps(_mm256_loadu_ps(acc + i + 8 * j), w));
            }
        }
        base_d = widen_add(base_d, _mm256_add_ps(base[0], base[1]));
        delta_d = widen_add(delta_d, _mm256_add_ps(delta[0], delta[1]));
    }
    double base_sum = total_pd(base_d), delta_sum = total_pd(delta_d);
    for (; i < n; i++) {
        float d = old[i] - new_[i];
        base_sum += (double)old[i] * old[i];
        delta_sum += (double)d * d;
        acc[i] += new_[i];
    }
    out[0] += base_sum;
    out[1] += delta_sum;
}

__attribute__((target("avx2")))
static void output_kernel_avx2(const float *x, Py_ssize_t n, double out[4]) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 low[4], high[4];
    __m256d squares_d = _mm256_setzero_pd();
    __m256i nonzero_q = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        low[j] = _mm256_set1_ps(INFINITY);
        high[j] = _mm256_set1_ps(-INFINITY);
    }
    Py_ssize_t i = 0;
    while (i + 32 <= n) {
        Py_ssize_t end = i + BLOCK < n ? i + BLOCK : n;
        __m256 sq[4];
        __m256i count[4];
        for (int j = 0; j < 4; j++) {
            sq[j] = zero;
            count[j] = _mm256_setzero_si256();
        }
        for (; i + 32 <= end; i += 32) {
            for (int j = 0; j < 4; j++) {
                __m256 v = _mm256_loadu_ps(x + i + 8 * j);
                sq[j] = _mm256_add_ps(sq[j], _mm256_mul_ps(v, v));
                low[j] = _mm256_min_ps(v, low[j]); /* a NaN v keeps low */
                high[j] = _mm256_max_ps(v, high[j]);
                /* unordered: NaN != 0 counts */
                count[j] = _mm256_add_epi32(count[j], _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ)));
            }
        }
        squares_d = widen_add(squares_d, _mm256_add_ps(_mm256_add_ps(sq[0], sq[1]), _mm256_add_ps(sq[2], sq[3])));
        nonzero_q = widen_count(nonzero_q, _mm256_add_epi32(_mm256_add_epi32(count[0], count[1]),
                                                             _mm256_add_epi32(count[2], count[3])));
    }
    double squares = total_pd(squares_d);
    int64_t nonzero = total_epi64(nonzero_q);
    float lowest = extreme(_mm256_min_ps(_mm256_min_ps(low[0], low[1]), _mm256_min_ps(low[2], low[3])), 0);
    float highest = extreme(_mm256_max_ps(_mm256_max_ps(high[0], high[1]), _mm256_max_ps(high[2], high[3])), 1);
    output_tail(x, i, n, squares, lowest, highest, nonzero, out);
}
#else
#define HAVE_AVX2_KERNELS 0
#endif

static int use_avx2(void) {
#if HAVE_AVX2_KERNELS
    static int known = -1;
    if (portable_only) return 0;
    if (known < 0) known = __builtin_cpu_supports("avx2") ? 1 : 0;
    return known;
#else
    return 0;
#endif
}

static void gradient_kernel(const float *x, Py_ssize_t n, double out[4]) {
#if HAVE_AVX2_KERNELS
    if (use_avx2()) {
        gradient_kernel_avx2(x, n, out);
        return;
    }
#endif
    gradient_kernel_generic(x, n, out);
}

static void update_kernel(const float *old, const float *new_, Py_ssize_t n, double out[2]) {
#if HAVE_AVX2_KERNELS
    if (use_avx2()) {
        update_kernel_avx2(old, new_, n, out);
        return;
    }
#endif
    update_kernel_generic(old, new_, n, out);
}

static void update_row(const float *old, const float *new_, float *acc, Py_ssize_t n, double out[2]) {
#if HAVE_AVX2_KERNELS
    if (use_avx2()) {
        update_row_avx2(old, new_, acc, n, out);
        return;
    }
#endif
    update_row_generic(old, new_, acc, n, out);
}

static void output_kernel(const float *x, Py_ssize_t n, double out[4]) {
#if HAVE_AVX2_KERNELS
    if (use_avx2()) {
        output_kernel_avx2(x, n, out);
        return;
    }
#endif
    output_kernel_generic(x, n, out);
}

/* -- work on PyTorch's own OpenMP threads ---------------------------------- */

/* A logging step's passes are split into tasks of about CHUNK elements,
 * whatever the thread count: each task writes its own partial sums, which
 * are then added up in task order, so the results do not depend on how
 * many threads ran (nor on which ran what). The threads are PyTorch's: its
 * OpenMP runtime is already loaded (dlopen RTLD_NOLOAD; never a second
 * runtime), and right after a training op its workers are awake, so
 * handing them work costs microseconds where a thread of our own would
 * have to be woken. Without it (another threading backend, Windows), or
 * with one thread, the tasks run in order on the calling thread. */
#define CHUNK 65536

#if (defined(__unix__) || defined(__APPLE__)) && (defined(__GNUC__) || defined(__clang__))
#include <dlfcn.h>
#include <pthread.h>
#define HAVE_TASK_THREADS 1
#else
#define HAVE_TASK_THREADS 0
#endif

typedef void (*gomp_parallel_t)(void (*)(void *), void *, unsigned, unsigned);
static gomp_parallel_t gomp_parallel = NULL;
static int (*omp_thread_num)(void) = NULL;
static int (*omp_max_threads)(void) = NULL;
static int openmp_looked_up = 0;
static int thread_limit = 0; /* test seam (set_threads): 0 = PyTorch's setting */

/* A forked child inherits the parent's thread pool without its threads:
 * GNU libgomp then waits for them forever (as PyTorch's own parallel ops
 * do in such a child). A child of a process that imported us runs the
 * tasks on its one thread (registered at import: see PyInit__fused). */
static int forked_child = 0;
static void note_forked_child(void) { forked_child = 1; }

static void find_openmp(void) {
    if (openmp_looked_up) return;
    openmp_looked_up = 1;
#if HAVE_TASK_THREADS
    /* GNU libgomp (PyTorch's Linux wheels), LLVM libomp (macOS): both
     * export the GOMP entry points. */
    static const char *names[] = {"libgomp.so.1", "libomp.so", "libomp.dylib", "libiomp5.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
        if (lib == NULL) continue;
        gomp_parallel = (gomp_parallel_t)dlsym(lib, "GOMP_parallel");
        *(void **)&omp_thread_num = dlsym(lib, "omp_get_thread_num");
        *(void **)&omp_max_threads = dlsym(lib, "omp_get_max_threads");
        if (gomp_parallel && omp_thread_num && omp_max_threads) return;
        gomp_parallel = NULL;
    }
#endif
}

/* Threads for the next tasks (with the GIL held: PyTorch's setting for
 * this thread, which torch.set_num_threads sets). */
static int task_threads(void) {
    find_openmp();
    if (gomp_parallel == NULL || forked_child) return 1;
    int threads = omp_max_threads();
    if (thread_limit > 0 && thread_limit < threads) threads = thread_limit;
    return threads > 1 ? threads : 1;
}

typedef struct {
    void (*run)(void *context, Py_ssize_t task, int worker);
    void *context;
    Py_ssize_t count;
    Py_ssize_t next; /* the next task to take (atomic) */
} Tasks;

#if HAVE_TASK_THREADS
static void take_tasks(void *data) {
    Tasks *tasks = data;
    int worker = omp_thread_num();
    for (;;) {
        Py_ssize_t task = __atomic_fetch_add(&tasks->next, 1, __ATOMIC_RELAXED);
        if (task >= tasks->count) return;
        tasks->run(tasks->context, task, worker);
    }
}
#endif

/* Runs run(context, task, worker) for task in [0, count) on up to `threads`
 * threads (worker < threads); without the GIL. */
static void run_tasks(void (*run)(void *, Py_ssize_t, int), void *context, Py_ssize_t count, int threads) {
    if (threads > count) threads = (int)count;
#if HAVE_TASK_THREADS
    if (threads > 1 && gomp_parallel != NULL) {
        Tasks tasks = {run, context, count, 0};
        gomp_parallel(take_tasks, &tasks, (unsigned)threads, 0);
        return;
    }
#endif
    for (Py_ssize_t task = 0; task < count; task++) run(context, task, 0);
}

/* -- buffers ------------------------------------------------------------- */

/* A C-contiguous float32 view of `obj` (writable if asked); 0 or -1. */
/* Raised for data the kernels do not read (not float32, not C-contiguous,
 * read-only where written): callers take their PyTorch path then, while
 * any other error (sizes that do not match) stays an error. */
static PyObject *Unreadable;

static int float_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        if (PyObject_CheckBuffer(obj)) { /* a buffer, but not one laid out as asked */
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyObject *text = value ? PyObject_Str(value) : NULL;
            PyErr_Format(Unreadable, "%s: %s", what, text ? PyUnicode_AsUTF8(text) : "unreadable buffer");
            Py_XDECREF(text);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(traceback);
        }
        return -1;
    }
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyErr_Format(Unreadable, "%s: expected float32 data, got format %s", what,
                     view->format ? view->format : "(none)");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Buffers of every item of `sequence`; returns the count or -1. */
static Py_ssize_t float_buffers_as(PyObject *sequence, Py_buffer **views, int writable, const char *what) {
    PyObject *items = PySequence_Fast(sequence, "expected a sequence of float32 arrays");
    if (items == NULL) return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    *views = PyMem_Calloc(count ? count : 1, sizeof(Py_buffer));
    if (*views == NULL) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        if (float_buffer(PySequence_Fast_GET_ITEM(items, k), &(*views)[k], writable, what) < 0) {
            for (Py_ssize_t j = 0; j < k; j++) PyBuffer_Release(&(*views)[j]);
            PyMem_Free(*views);
            *views = NULL;
            Py_DECREF(items);
            return -1;
        }
    }
    Py_DECREF(items);
    return count;
}

static Py_ssize_t float_buffers(PyObject *sequence, Py_buffer **views, const char *what) {
    return float_buffers_as(sequence, views, 0, what);
}

/* The same, each buffer writable. */
static Py_ssize_t writable_buffers(PyObject *sequence, Py_buffer **views, const char *what) {
    return float_buffers_as(sequence, views, 1, what);
}

static void release_all(Py_buffer *views, Py_ssize_t count) {
    for (Py_ssize_t k = 0; k < count; k++) PyBuffer_Release(&views[k]);
    PyMem_Free(views);
}

static Py_ssize_t elements(const Py_buffer *view) { return view->len / 4; }

/* -- Python functions ------------------------------------------------------ */

PyDoc_STRVAR(gradient_statistics_doc,
"gradient_statistics(arrays, out)\n\n"
"For n float32 arrays, writes into the float32 buffer `out` (4 n values)\n"
"[sums of squares | sums of |x| | max |x| | NaN/Inf counts], one pass each.");

static PyObject *gradient_statistics(PyObject *self, PyObject *args) {
    PyObject *arrays, *out_obj;
    if (!PyArg_ParseTuple(args, "OO:gradient_statistics", &arrays, &out_obj)) return NULL;
    Py_buffer *views, out;
    Py_ssize_t count = float_buffers(arrays, &views, "gradient_statistics");
    if (count < 0) return NULL;
    if (float_buffer(out_obj, &out, 1, "gradient_statistics out") < 0) {
        release_all(views, count);
        return NULL;
    }
    if (elements(&out) != 4 * count) {
        PyErr_Format(PyExc_ValueError, "gradient_statistics: out holds %zd values, %zd needed",
                     elements(&out), 4 * count);
    } else {
        float *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t k = 0; k < count; k++) {
            double r[4];
            gradient_kernel(views[k].buf, elements(&views[k]), r);
            for (int row = 0; row < 4; row++) o[row * count + k] = (float)r[row];
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&out);
    release_all(views, count);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(update_statistics_doc,
"update_statistics(olds, news, out, grids=None)\n\n"
"For n pairs of equally long float32 arrays, writes into `out` (2 n values)\n"
"[sums of squares of old | sums of squares of (old - new)], one pass each.\n"
"`grids`: None or, per pair, None or (grid, rows, out_rows, out_cols): `new`\n"
"viewed as `rows` rows is pooled into the float32 buffer `grid` in the same\n"
"pass (block sums along an axis that divides evenly, bin means otherwise).");

/* Parses one (grid, rows, out_rows, out_cols) for an array of n values. */
/* A grid's matrix view and cell count checked against n values. */
static int grid_dims(Py_ssize_t n, Py_ssize_t rows, Py_ssize_t out_rows, Py_ssize_t out_cols, Grid *grid,
                     const char *what) {
    if (rows < 1 || n % rows != 0 || out_rows < 1 || out_rows > rows || out_cols < 1
        || out_cols > n / rows) {
        PyErr_Format(PyExc_ValueError, "%s: cannot pool %zd values as %zd rows into %zd x %zd",
                     what, n, rows, out_rows, out_cols);
        return -1;
    }
    grid->rows = rows;
    grid->cols = n / rows;
    grid->out_rows = out_rows;
    grid->out_cols = out_cols;
    return 0;
}

static int parse_grid(PyObject *item, Py_ssize_t n, Grid *grid, Py_buffer *view) {
    PyObject *buffer;
    Py_ssize_t rows, out_rows, out_cols;
    if (!PyArg_ParseTuple(item, "Onnn:update_statistics grid", &buffer, &rows, &out_rows, &out_cols))
        return -1;
    if (grid_dims(n, rows, out_rows, out_cols, grid, "update_statistics") < 0) return -1;
    if (float_buffer(buffer, view, 1, "update_statistics grid") < 0) return -1;
    if (elements(view) != out_rows * out_cols) {
        PyErr_Format(PyExc_ValueError, "update_statistics: a %zd x %zd grid needs %zd values, got %zd",
                     out_rows, out_cols, out_rows * out_cols, elements(view));
        PyBuffer_Release(view);
        return -1;
    }
    grid->out = view->buf;
    return 0;
}

/* Scratch the pooling of several grids shares: row sums as wide as the
 * widest matrix, the column bins of the grid with the most columns. */
typedef struct {
    Py_ssize_t widest, most_bins;
    float *acc;
    Bin *bins;
} Scratch;

static void scratch_fit(Scratch *s, const Grid *g) {
    if (g->cols > s->widest) s->widest = g->cols;
    if (g->out_cols > s->most_bins) s->most_bins = g->out_cols;
}

/* 0, or -1 with MemoryError set. */
static int scratch_alloc(Scratch *s) {
    s->acc = s->widest ? PyMem_RawMalloc((size_t)s->widest * sizeof(float)) : NULL;
    s->bins = s->most_bins ? PyMem_RawMalloc((size_t)s->most_bins * sizeof(Bin)) : NULL;
    if ((s->widest && s->acc == NULL) || (s->most_bins && s->bins == NULL)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void scratch_free(Scratch *s) {
    PyMem_RawFree(s->acc);
    PyMem_RawFree(s->bins);
    s->acc = NULL;
    s->bins = NULL;
}

/* update_kernel's sums of one pair; where `g` is not NULL, `new_` is also
 * pooled into it in the same pass. */
static void update_pair(const float *old, const float *new_, Py_ssize_t n, const Grid *g, Scratch *s,
                        double out[2]) {
    if (g != NULL)
        update_pool_kernel(old, new_, g, s->acc, s->bins, out);
    else
        update_kernel(old, new_, n, out);
}

static PyObject *update_statistics(PyObject *self, PyObject *args) {
    PyObject *olds_obj, *news_obj, *out_obj, *grids_obj = Py_None, *grid_items = NULL;
    if (!PyArg_ParseTuple(args, "OOO|O:update_statistics", &olds_obj, &news_obj, &out_obj, &grids_obj))
        return NULL;
    Py_buffer *olds = NULL, *news = NULL, *grid_views = NULL, out;
    Grid *grids = NULL;
    char *pooled = NULL;
    Py_ssize_t count = -1, other = -1;
    Scratch scratch = {0};
    int have_out = 0;
    count = float_buffers(olds_obj, &olds, "update_statistics");
    if (count < 0) goto done;
    other = float_buffers(news_obj, &news, "update_statistics");
    if (other < 0) goto done;
    if (float_buffer(out_obj, &out, 1, "update_statistics out") < 0) goto done;
    have_out = 1;
    if (other != count) {
        PyErr_Format(PyExc_ValueError, "update_statistics: %zd old and %zd new arrays", count, other);
        goto done;
    }
    if (elements(&out) != 2 * count) {
        PyErr_Format(PyExc_ValueError, "update_statistics: out holds %zd values, %zd needed",
                     elements(&out), 2 * count);
        goto done;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        if (olds[k].len != news[k].len) {
            PyErr_Format(PyExc_ValueError, "update_statistics: pair %zd has %zd and %zd values",
                         k, elements(&olds[k]), elements(&news[k]));
            goto done;
        }
    }
    grids = PyMem_Calloc(count ? count : 1, sizeof(Grid));
    grid_views = PyMem_Calloc(count ? count : 1, sizeof(Py_buffer));
    pooled = PyMem_Calloc(count ? count : 1, 1);
    if (grids == NULL || grid_views == NULL || pooled == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (grids_obj != Py_None) {
        grid_items = PySequence_Fast(grids_obj, "update_statistics: grids must be a sequence");
        if (grid_items == NULL) goto done;
        if (PySequence_Fast_GET_SIZE(grid_items) != count) {
            PyErr_Format(PyExc_ValueError, "update_statistics: %zd grids for %zd pairs",
                         PySequence_Fast_GET_SIZE(grid_items), count);
            goto done;
        }
        for (Py_ssize_t k = 0; k < count; k++) {
            PyObject *item = PySequence_Fast_GET_ITEM(grid_items, k);
            if (item == Py_None) continue;
            if (parse_grid(item, elements(&news[k]), &grids[k], &grid_views[k]) < 0) goto done;
            pooled[k] = 1;
            scratch_fit(&scratch, &grids[k]);
        }
    }
    if (scratch_alloc(&scratch) < 0) goto done;
    {
        float *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t k = 0; k < count; k++) {
            double r[2];
            update_pair(olds[k].buf, news[k].buf, elements(&olds[k]), pooled[k] ? &grids[k] : NULL, &scratch, r);
            o[k] = (float)r[0];
            o[count + k] = (float)r[1];
        }
        Py_END_ALLOW_THREADS
    }
done:
    scratch_free(&scratch);
    if (grid_views != NULL) {
        for (Py_ssize_t k = 0; k < count; k++)
            if (pooled != NULL && pooled[k]) PyBuffer_Release(&grid_views[k]);
    }
    PyMem_Free(grid_views);
    PyMem_Free(grids);
    PyMem_Free(pooled);
    Py_XDECREF(grid_items);
    if (have_out) PyBuffer_Release(&out);
    if (olds != NULL) release_all(olds, count);
    if (news != NULL) release_all(news, other);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* A grid whose cells lie at `offset` in `out` (of out_len floats). */
static int grid_in(Py_ssize_t n, Py_ssize_t offset, Py_ssize_t rows, Py_ssize_t out_rows,
                   Py_ssize_t out_cols, float *out, Py_ssize_t out_len, Grid *grid) {
    if (grid_dims(n, rows, out_rows, out_cols, grid, "parameter_statistics") < 0) return -1;
    if (offset < 0 || offset > out_len - out_rows * out_cols) {
        PyErr_Format(PyExc_ValueError, "parameter_statistics: a %zd x %zd grid at %zd overruns out (%zd values)",
                     out_rows, out_cols, offset, out_len);
        return -1;
    }
    grid->out = out + offset;
    return 0;
}

/* The tasks of parameter_statistics (see CHUNK): a gradient's elements
 * [a, b); a weight pair's update sums over [a, b); a pooled pair's row
 * bins [a, b) with the update sums of their rows; an only-pooled array's
 * row bins [a, b); the copy of a weight's elements [a, b) into its kept
 * buffer (the stage before the optimizer step). */
enum { TASK_GRADIENT, TASK_UPDATE, TASK_UPDATE_POOL, TASK_POOL, TASK_COPY };

/* What one parameter_statistics call does: everything after the optimizer
 * step, or the pass split in two around it: before, the gradients (while
 * backward has just left them in cache) and the copy of the weights; after,
 * the updates and the grids. */
enum { STAGE_ALL, STAGE_BEFORE, STAGE_AFTER };

typedef struct {
    int kind;
    Py_ssize_t k, a, b;
} Task;

typedef struct {
    Py_buffer *grads, *olds, *news;
    Grid *grids;
    const char *pooled;
    Grid *pools;
    Py_buffer *pool_views;
    Task *tasks;
    double (*parts)[4]; /* per task */
    Scratch *scratch;   /* per worker */
    Py_ssize_t count;   /* tasks */
    int stage;          /* STAGE_* */
} ParameterPass;

/* Row bins per task: about CHUNK elements each. */
static Py_ssize_t bins_per_task(const Grid *g) {
    Py_ssize_t bin_rows = (g->rows + g->out_rows - 1) / g->out_rows, per_bin = bin_rows * g->cols;
    Py_ssize_t bins = per_bin > 0 ? CHUNK / per_bin : g->out_rows;
    return bins > 0 ? bins : 1;
}

static Py_ssize_t add_tasks(Task *tasks, Py_ssize_t at, int kind, Py_ssize_t k, Py_ssize_t total, Py_ssize_t step) {
    for (Py_ssize_t a = 0; a < total; a += step) {
        if (tasks != NULL) {
            Task task = {kind, k, a, a + step < total ? a + step : total};
            tasks[at] = task;
        }
        at++;
    }
    return at;
}

/* Lists the tasks, in the order their partial sums are added up. */
static Py_ssize_t list_tasks(const ParameterPass *job, Py_ssize_t count, Py_ssize_t n_pools, Task *tasks) {
    Py_ssize_t at = 0;
    /* The last parameter first: an optimizer steps the parameters in order
     * and a forward reads the first layers first, so what the pass read
     * last (the first parameters) is what training reads next, still in
     * cache. Each parameter's sums stay in their chunk order. */
    for (Py_ssize_t j = 0; j < count; j++) {
        Py_ssize_t k = count - 1 - j;
        if (job->stage != STAGE_AFTER) at = add_tasks(tasks, at, TASK_GRADIENT, k, elements(&job->grads[k]), CHUNK);
        if (job->stage == STAGE_BEFORE)
            at = add_tasks(tasks, at, TASK_COPY, k, elements(&job->olds[k]), CHUNK);
        else if (job->pooled[k])
            at = add_tasks(tasks, at, TASK_UPDATE_POOL, k, job->grids[k].out_rows, bins_per_task(&job->grids[k]));
        else
            at = add_tasks(tasks, at, TASK_UPDATE, k, elements(&job->olds[k]), CHUNK);
    }
    for (Py_ssize_t p = 0; p < n_pools && job->stage != STAGE_BEFORE; p++)
        at = add_tasks(tasks, at, TASK_POOL, p, job->pools[p].out_rows, bins_per_task(&job->pools[p]));
    return at;
}

/* 0, or -1 with MemoryError set. `scratch` holds the sizes every worker's
 * pooling scratch needs. */
static int plan_parameter_pass(ParameterPass *job, Py_ssize_t count, Py_ssize_t n_pools, const Scratch *scratch,
                               int threads) {
    job->count = list_tasks(job, count, n_pools, NULL);
    job->tasks = PyMem_RawMalloc((size_t)(job->count ? job->count : 1) * sizeof(Task));
    job->parts = PyMem_RawCalloc((size_t)(job->count ? job->count : 1), sizeof *job->parts);
    job->scratch = PyMem_RawCalloc((size_t)threads, sizeof(Scratch));
    if (job->tasks == NULL || job->parts == NULL || job->scratch == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    list_tasks(job, count, n_pools, job->tasks);
    for (int w = 0; w < threads; w++) {
        job->scratch[w].widest = scratch->widest;
        job->scratch[w].most_bins = scratch->most_bins;
        if (scratch_alloc(&job->scratch[w]) < 0) return -1;
    }
    return 0;
}

static void free_parameter_pass(ParameterPass *job, int threads) {
    if (job->scratch != NULL)
        for (int w = 0; w < threads; w++) scratch_free(&job->scratch[w]);
    PyMem_RawFree(job->scratch);
    PyMem_RawFree(job->parts);
    PyMem_RawFree(job->tasks);
}

static void parameter_task(void *context, Py_ssize_t index, int worker) {
    ParameterPass *job = context;
    const Task *task = &job->tasks[index];
    double *part = job->parts[index];
    Scratch *scratch = &job->scratch[worker];
    switch (task->kind) {
    case TASK_GRADIENT:
        gradient_kernel((const float *)job->grads[task->k].buf + task->a, task->b - task->a, part);
        break;
    case TASK_UPDATE:
        update_kernel((const float *)job->olds[task->k].buf + task->a,
                      (const float *)job->news[task->k].buf + task->a, task->b - task->a, part);
        break;
    case TASK_UPDATE_POOL:
        update_pool_bins(job->olds[task->k].buf, job->news[task->k].buf, &job->grids[task->k], scratch->acc,
                         scratch->bins, task->a, task->b, part);
        break;
    case TASK_COPY:
        memcpy((float *)job->olds[task->k].buf + task->a, (const float *)job->news[task->k].buf + task->a,
               (size_t)(task->b - task->a) * sizeof(float));
        break;
    default:
        update_pool_bins(NULL, job->pool_views[task->k].buf, &job->pools[task->k], scratch->acc, scratch->bins,
                         task->a, task->b, part);
    }
}

/* The tasks' partial sums, added up in task order, into out: [sq_sum |
 * abs_sum | abs_max | nonfinite | squares of olds | of olds - news]. */
static void add_parameter_parts(const ParameterPass *job, Py_ssize_t count, float *o) {
    double g[4] = {0.0, 0.0, 0.0, 0.0}, u[2] = {0.0, 0.0};
    for (Py_ssize_t t = 0; t < job->count; t++) {
        const Task *task = &job->tasks[t];
        const double *part = job->parts[t];
        if (task->kind == TASK_GRADIENT) {
            g[0] += part[0];
            g[1] += part[1];
            g[2] = isnan(g[2]) || isnan(part[2]) ? NAN : (part[2] > g[2] ? part[2] : g[2]);
            g[3] += part[3];
        } else if (task->kind != TASK_POOL && task->kind != TASK_COPY) {
            u[0] += part[0];
            u[1] += part[1];
        }
        /* A parameter's last task: its values are complete. */
        int last = t + 1 == job->count || job->tasks[t + 1].k != task->k
                   || (task->kind == TASK_GRADIENT) != (job->tasks[t + 1].kind == TASK_GRADIENT)
                   || job->tasks[t + 1].kind == TASK_POOL;
        if (!last || task->kind == TASK_POOL || task->kind == TASK_COPY) continue;
        Py_ssize_t k = task->k;
        if (task->kind == TASK_GRADIENT) {
            for (int row = 0; row < 4; row++) o[row * count + k] = (float)g[row];
            g[0] = g[1] = g[2] = g[3] = 0.0;
        } else {
            o[4 * count + k] = (float)u[0];
            o[5 * count + k] = (float)u[1];
            u[0] = u[1] = 0.0;
        }
    }
}

PyDoc_STRVAR(parameter_statistics_doc,
"parameter_statistics(grads, olds, news, out, grids, pools) -> None\n\n"
"A logging step's parameter side in one call, each array read once. For n\n"
"gradients and the weights before (olds) and after (news) the step, all\n"
"of one size per k, out starts with [sq_sum | abs_sum | abs_max | nonfinite]\n"
"(4n values, as gradient_statistics) then [squares of olds | squares of\n"
"olds - news] (2n, as update_statistics). grids: per k None or (offset,\n"
"rows, out_rows, out_cols): news[k] viewed as a rows-row matrix is pooled\n"
"into out[offset:] in the same pass (update_statistics' rule). pools:\n"
"(array, offset, rows, out_rows, out_cols) of arrays only pooled.\n\n"
"stage: 0 (all of it, after the optimizer step), or the same split in two\n"
"calls around the step: 1, before it, writes the gradient statistics and\n"
"copies each news[k] into olds[k] (writable then); 2, after it, writes\n"
"the update norms and the grids. 1 then 2 write the values 0 writes.");

static PyObject *parameter_statistics(PyObject *self, PyObject *args) {
    PyObject *grads_obj, *olds_obj, *news_obj, *out_obj, *grids_obj, *pools_obj;
    int stage = STAGE_ALL;
    if (!PyArg_ParseTuple(args, "OOOOOO|i:parameter_statistics", &grads_obj, &olds_obj, &news_obj, &out_obj,
                          &grids_obj, &pools_obj, &stage))
        return NULL;
    if (stage < STAGE_ALL || stage > STAGE_AFTER) {
        PyErr_Format(PyExc_ValueError, "parameter_statistics: stage must be 0, 1 or 2, not %d", stage);
        return NULL;
    }
    Py_buffer *grads = NULL, *olds = NULL, *news = NULL, *pool_views = NULL, out;
    PyObject *grid_items = NULL, *pool_items = NULL;
    Grid *grids = NULL, *pools = NULL;
    char *pooled = NULL;
    Scratch scratch = {0}; /* sizes only: each worker's own is made by plan_parameter_pass */
    Py_ssize_t count = -1, n_olds = -1, n_news = -1, n_pools = 0, parsed_pools = 0;
    int have_out = 0;
    count = float_buffers(grads_obj, &grads, "parameter_statistics");
    if (count < 0) goto done;
    n_olds = float_buffers_as(olds_obj, &olds, stage == STAGE_BEFORE, "parameter_statistics");
    if (n_olds < 0) goto done;
    n_news = float_buffers(news_obj, &news, "parameter_statistics");
    if (n_news < 0) goto done;
    if (float_buffer(out_obj, &out, 1, "parameter_statistics out") < 0) goto done;
    have_out = 1;
    if (n_olds != count || n_news != count) {
        PyErr_Format(PyExc_ValueError, "parameter_statistics: %zd gradients, %zd old and %zd new arrays",
                     count, n_olds, n_news);
        goto done;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        if (grads[k].len != olds[k].len || olds[k].len != news[k].len || grads[k].len == 0) {
            PyErr_Format(PyExc_ValueError,
                         "parameter_statistics: parameter %zd has %zd gradient, %zd old and %zd new values",
                         k, elements(&grads[k]), elements(&olds[k]), elements(&news[k]));
            goto done;
        }
    }
    if (elements(&out) < 6 * count) {
        PyErr_Format(PyExc_ValueError, "parameter_statistics: out holds %zd values, at least %zd needed",
                     elements(&out), 6 * count);
        goto done;
    }
    grids = PyMem_Calloc(count ? count : 1, sizeof(Grid));
    pooled = PyMem_Calloc(count ? count : 1, 1);
    if (grids == NULL || pooled == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    grid_items = PySequence_Fast(grids_obj, "parameter_statistics: grids must be a sequence");
    if (grid_items == NULL) goto done;
    if (PySequence_Fast_GET_SIZE(grid_items) != count) {
        PyErr_Format(PyExc_ValueError, "parameter_statistics: %zd grids for %zd parameters",
                     PySequence_Fast_GET_SIZE(grid_items), count);
        goto done;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(grid_items, k);
        Py_ssize_t offset, rows, out_rows, out_cols;
        if (item == Py_None) continue;
        if (!PyArg_ParseTuple(item, "nnnn:parameter_statistics grid", &offset, &rows, &out_rows, &out_cols))
            goto done;
        if (grid_in(elements(&news[k]), offset, rows, out_rows, out_cols, out.buf, elements(&out), &grids[k]) < 0)
            goto done;
        pooled[k] = 1;
        scratch_fit(&scratch, &grids[k]);
    }
    pool_items = PySequence_Fast(pools_obj, "parameter_statistics: pools must be a sequence");
    if (pool_items == NULL) goto done;
    n_pools = PySequence_Fast_GET_SIZE(pool_items);
    pools = PyMem_Calloc(n_pools ? n_pools : 1, sizeof(Grid));
    pool_views = PyMem_Calloc(n_pools ? n_pools : 1, sizeof(Py_buffer));
    if (pools == NULL || pool_views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed_pools < n_pools; parsed_pools++) {
        PyObject *item = PySequence_Fast_GET_ITEM(pool_items, parsed_pools), *array;
        Py_ssize_t offset, rows, out_rows, out_cols;
        if (!PyArg_ParseTuple(item, "Onnnn:parameter_statistics pool", &array, &offset, &rows, &out_rows,
                              &out_cols))
            goto done;
        if (float_buffer(array, &pool_views[parsed_pools], 0, "parameter_statistics pool") < 0) goto done;
        Grid *g = &pools[parsed_pools];
        if (grid_in(elements(&pool_views[parsed_pools]), offset, rows, out_rows, out_cols, out.buf,
                    elements(&out), g) < 0) {
            PyBuffer_Release(&pool_views[parsed_pools]);
            goto done;
        }
        scratch_fit(&scratch, g);
    }
    {
        ParameterPass job = {grads, olds, news, grids, pooled, pools, pool_views, NULL, NULL, NULL, 0, stage};
        int threads = task_threads();
        if (plan_parameter_pass(&job, count, n_pools, &scratch, threads) < 0) {
            free_parameter_pass(&job, threads);
            goto done;
        }
        float *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
        run_tasks(parameter_task, &job, job.count, threads);
        add_parameter_parts(&job, count, o);
        Py_END_ALLOW_THREADS
        free_parameter_pass(&job, threads);
    }
done:
    if (pool_views != NULL)
        for (Py_ssize_t k = 0; k < parsed_pools; k++) PyBuffer_Release(&pool_views[k]);
    PyMem_Free(pool_views);
    PyMem_Free(pools);
    PyMem_Free(grids);
    PyMem_Free(pooled);
    Py_XDECREF(grid_items);
    Py_XDECREF(pool_items);
    if (have_out) PyBuffer_Release(&out);
    if (grads != NULL) release_all(grads, count);
    if (olds != NULL) release_all(olds, n_olds);
    if (news != NULL) release_all(news, n_news);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(class_statistics_doc,
"class_statistics(scores, sums) -> (entropy_sum, max)\n\n"
"For a C-contiguous float32 [rows, width] array of class scores: the sum\n"
"over rows of each row's softmax into sums (width float32 values), the sum\n"
"of the rows' predictive entropies and the largest score. A row holding a\n"
"NaN or an infinite maximum has a NaN softmax, as PyTorch's; the largest\n"
"score is NaN where any score is.");

static PyObject *class_statistics(PyObject *self, PyObject *args) {
    PyObject *scores_obj, *sums_obj;
    if (!PyArg_ParseTuple(args, "OO:class_statistics", &scores_obj, &sums_obj)) return NULL;
    Py_buffer scores, sums;
    if (float_buffer(scores_obj, &scores, 0, "class_statistics") < 0) return NULL;
    if (float_buffer(sums_obj, &sums, 1, "class_statistics sums") < 0) {
        PyBuffer_Release(&scores);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t width = elements(&sums), count = elements(&scores);
    if (scores.ndim != 2 || scores.shape[1] != width || width < 1) {
        PyErr_Format(PyExc_ValueError, "class_statistics: scores must be [rows, %zd]", width);
        goto done;
    }
    double *acc = PyMem_RawCalloc((size_t)(2 * width), sizeof(double));
    if (acc == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double entropy = 0.0;
    float top = -INFINITY;
    int top_nan = 0;
    const float *x = scores.buf;
    Py_BEGIN_ALLOW_THREADS
    double *exps = acc + width;
    for (Py_ssize_t start = 0; start < count; start += width) {
        const float *row = x + start;
        float m = -INFINITY;
        int nan = 0;
        for (Py_ssize_t j = 0; j < width; j++) {
            if (row[j] != row[j]) nan = 1;
            else if (row[j] > m) m = row[j];
        }
        if (nan) top_nan = 1;
        else if (m > top) top = m;
        if (nan || isinf(m)) { /* PyTorch: a NaN softmax */
            for (Py_ssize_t j = 0; j < width; j++) acc[j] = NAN;
            entropy = NAN;
            continue;
        }
        double total = 0.0;
        for (Py_ssize_t j = 0; j < width; j++) total += exps[j] = exp((double)row[j] - m);
        /* entropy = log(total) - sum p (x - m), over p > 0 (0 log 0 = 0) */
        double weighted = 0.0;
        for (Py_ssize_t j = 0; j < width; j++) {
            double p = exps[j] / total;
            acc[j] += p;
            if (p > 0.0) weighted += p * ((double)row[j] - m);
        }
        entropy += log(total) - weighted;
    }
    float *out = sums.buf;
    for (Py_ssize_t j = 0; j < width; j++) out[j] = (float)acc[j];
    Py_END_ALLOW_THREADS
    PyMem_RawFree(acc);
    result = Py_BuildValue("(dd)", count ? entropy : 0.0, top_nan ? (double)NAN : (double)top);
done:
    PyBuffer_Release(&sums);
    PyBuffer_Release(&scores);
    return result;
}

typedef struct {
    const float *x;
    Py_ssize_t n;
    double (*parts)[4];
} OutputChunks;

static void output_chunk(void *context, Py_ssize_t chunk, int worker) {
    OutputChunks *job = context;
    Py_ssize_t start = chunk * CHUNK, end = start + CHUNK < job->n ? start + CHUNK : job->n;
    (void)worker;
    output_kernel(job->x + start, end - start, job->parts[chunk]);
}

PyDoc_STRVAR(output_statistics_doc,
"output_statistics(array) -> (norm, min, max, nonzero, elements)\n\n"
"The L2 norm, minimum, maximum and number of nonzero elements (NaN counts)\n"
"of a non-empty float32 array as Python floats, in one pass, and its number\n"
"of elements (an int: the caller needs no numel() call).");

static PyObject *output_statistics(PyObject *self, PyObject *array_obj) {
    Py_buffer array;
    if (float_buffer(array_obj, &array, 0, "output_statistics") < 0) return NULL;
    if (elements(&array) == 0) {
        PyBuffer_Release(&array);
        PyErr_SetString(PyExc_ValueError, "output_statistics: the array is empty");
        return NULL;
    }
    Py_ssize_t n = elements(&array), chunks = (n + CHUNK - 1) / CHUNK;
    double one[4], (*parts)[4] = chunks == 1 ? &one : PyMem_RawMalloc((size_t)chunks * sizeof *parts);
    if (parts == NULL) {
        PyBuffer_Release(&array);
        return PyErr_NoMemory();
    }
    OutputChunks job = {array.buf, n, parts};
    int threads = task_threads();
    Py_BEGIN_ALLOW_THREADS
    run_tasks(output_chunk, &job, chunks, threads);
    Py_END_ALLOW_THREADS
    double r[4] = {0.0, INFINITY, -INFINITY, 0.0};
    for (Py_ssize_t c = 0; c < chunks; c++) { /* in chunk order (see CHUNK) */
        r[0] += parts[c][0];
        if (parts[c][1] < r[1]) r[1] = parts[c][1];
        if (parts[c][2] > r[2]) r[2] = parts[c][2];
        r[3] += parts[c][3];
    }
    output_finish(r);
    if (parts != &one) PyMem_RawFree(parts);
    PyBuffer_Release(&array);
    return Py_BuildValue("(ddddn)", r[0], r[1], r[2], r[3], n);
}

/* -- float16 heatmap encoding (metadata.encode_heatmap_grid) -------------- */

/* float32 bits -> float16 bits, rounded to nearest even as numpy's cast
 * (npy_floatbits_to_halfbits); NaN stays NaN, overflow becomes +-Inf. */
static uint16_t half_bits(uint32_t f) {
    uint16_t sign = (uint16_t)((f & 0x80000000u) >> 16);
    uint32_t exponent = f & 0x7f800000u, significand;
    if (exponent >= 0x47800000u) {
        if (exponent == 0x7f800000u && (f & 0x007fffffu)) {
            uint16_t nan = (uint16_t)(0x7c00u + ((f & 0x007fffffu) >> 13));
            return (uint16_t)(sign + (nan == 0x7c00u ? 0x7c01u : nan));
        }
        return (uint16_t)(sign + 0x7c00u);
    }
    if (exponent <= 0x38000000u) {
        if (exponent < 0x33000000u) return sign;
        exponent >>= 23;
        significand = 0x00800000u + (f & 0x007fffffu);
        significand >>= (113 - exponent);
        if (((significand & 0x00003fffu) != 0x00001000u) || (f & 0x000007ffu))
            significand += 0x00001000u;
        return (uint16_t)(sign + (significand >> 13));
    }
    significand = f & 0x007fffffu;
    if ((significand & 0x00003fffu) != 0x00001000u) significand += 0x00001000u;
    return (uint16_t)(sign + ((exponent - 0x38000000u) >> 13) + (significand >> 13));
}

static uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* min and max of the finite cells (low > high: none is finite). */
MULTIVERSION
static void finite_range(const float *x, Py_ssize_t n, float *low_out, float *high_out) {
    float low = INFINITY, high = -INFINITY;
    Py_ssize_t i = 0;
#if HAVE_VECTORS
    vf low_v = splat(INFINITY);
    vf high_v = -low_v;
    const vf zero = {0};
    for (; i + LANES <= n; i += LANES) {
        vf v = load(x + i);
        vi finite = (v - v) == zero; /* false for NaN and +-Inf */
        low_v = pick(finite & (v < low_v), v, low_v);
        high_v = pick(finite & (v > high_v), v, high_v);
    }
    low = hmin(low_v, low);
    high = hmax(high_v, high);
#endif
    for (; i < n; i++) {
        float v = x[i];
        if (v - v == 0.0f) {
            if (v < low) low = v;
            if (v > high) high = v;
        }
    }
    *low_out = low;
    *high_out = high;
}

/* Whether a cell has 0 < |x| < floor. */
MULTIVERSION
static int any_tiny(const float *x, Py_ssize_t n, float floor) {
    Py_ssize_t i = 0;
#if HAVE_VECTORS
    const vf zero = {0};
    const vf lower = splat(floor);
    vi tiny = {0};
    for (; i + LANES <= n; i += LANES) {
        vf a = vabs(load(x + i));
        tiny |= (a < lower) & (a != zero);
    }
    for (int lane = 0; lane < LANES; lane++)
        if (tiny[lane]) return 1;
#endif
    for (; i < n; i++) {
        float a = fabsf(x[i]);
        if (a < floor && a != 0.0f) return 1;
    }
    return 0;
}

/* o[i] = float16 bits of x[i] * 2**k (exact before the rounding: the scaled
 * cells are zeros or float32 normals, see encode_heatmap). */
static void scaled_halves_portable(const float *x, Py_ssize_t n, int k, uint16_t *o) {
    const double scale = ldexp(1.0, k); /* 2**k may not be a float32 */
    for (Py_ssize_t i = 0; i < n; i++) o[i] = half_bits(float_bits((float)(x[i] * scale)));
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
/* F16C: 8 conversions per instruction, rounded to nearest even as above. */
__attribute__((target("avx,f16c")))
static void scaled_halves_f16c(const float *x, Py_ssize_t n, int k, uint16_t *o) {
    const float scale = ldexpf(1.0f, k);
    const __m256 factor = _mm256_set1_ps(scale);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), factor);
        _mm_storeu_si128((__m128i *)(o + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) o[i] = half_bits(float_bits(x[i] * scale));
}

static void scaled_halves(const float *x, Py_ssize_t n, int k, uint16_t *o) {
    if (!portable_only && k >= -126 && k <= 127 && __builtin_cpu_supports("f16c")
        && __builtin_cpu_supports("avx"))
        scaled_halves_f16c(x, n, k, o);
    else
        scaled_halves_portable(x, n, k, o);
}
#else
#define scaled_halves scaled_halves_portable
#endif

/* The float16 form of a float32 grid of `rows` x `cols` (cols >= 4) into
 * `o` ((rows + 1) x cols values); 0 (o untouched) where it must stay float32. */
static int encode_grid(const float *x, Py_ssize_t rows, Py_ssize_t cols, uint16_t *o) {
    Py_ssize_t n = rows * cols;
    float low, high;
    finite_range(x, n, &low, &high);
    int any_finite = low <= high;
    float vmin = any_finite ? low : NAN, vmax = any_finite ? high : NAN;
    int k = 0;
    if (any_finite) {
        float top = -vmin > vmax ? -vmin : vmax;
        if (top > 0.0f) {
            int e;
            frexpf(top, &e);
            k = 15 - e; /* top * 2**k in [2**14, 2**15) */
        }
        /* Every nonzero finite cell, so scaled, must be a float16 normal
         * (and is a float32 normal): else the float32 grid is kept. */
        int floor_exponent = -14 - k > -126 ? -14 - k : -126;
        if (any_tiny(x, n, ldexpf(1.0f, floor_exponent))) return 0;
    }
    scaled_halves(x, n, k, o);
    memset(o + n, 0, (size_t)cols * sizeof(uint16_t));
    uint32_t low_bits = float_bits(vmin), high_bits = float_bits(vmax);
    /* The exact float32 range as little-endian 16-bit halves. */
    o[n] = (uint16_t)(low_bits & 0xffffu);
    o[n + 1] = (uint16_t)(low_bits >> 16);
    o[n + 2] = (uint16_t)(high_bits & 0xffffu);
    o[n + 3] = (uint16_t)(high_bits >> 16);
    return 1;
}

PyDoc_STRVAR(encode_heatmap_doc,
"encode_heatmap(grid, rows, out) -> bool\n\n"
"metadata.encode_heatmap_grid's float16 form of a float32 grid of `rows`\n"
"rows (at least 4 columns) written into `out` ((rows + 1) x cols uint16\n"
"values); False (out untouched) where the grid must stay float32.");

static PyObject *encode_heatmap(PyObject *self, PyObject *args) {
    PyObject *grid_obj, *out_obj;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "OnO:encode_heatmap", &grid_obj, &rows, &out_obj)) return NULL;
    Py_buffer grid, out;
    if (float_buffer(grid_obj, &grid, 0, "encode_heatmap") < 0) return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&grid);
        return NULL;
    }
    Py_ssize_t n = elements(&grid), cols = rows > 0 ? n / rows : 0;
    int encoded = 0;
    if (rows < 1 || cols < 4 || cols * rows != n) {
        PyErr_Format(PyExc_ValueError, "encode_heatmap: %zd values are not %zd rows of >= 4", n, rows);
    } else if (out.len != (rows + 1) * cols * 2) {
        PyErr_Format(PyExc_ValueError, "encode_heatmap: out holds %zd bytes, %zd needed",
                     out.len, (rows + 1) * cols * 2);
    } else {
        const float *x = grid.buf;
        uint16_t *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
        encoded = encode_grid(x, rows, cols, o);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&grid);
    if (PyErr_Occurred()) return NULL;
    return PyBool_FromLong(encoded);
}

/* -- a whole event's Summary bytes (watch/render.py) ------------------------ */

/* The instructions of render_event: each writes one value of the event at
 * byte `dst` of the Summary (float64 values little-endian as the host's;
 * heatmaps as their stored encoding). Fields: op, dst, a, b, c, d. */
enum {
    R_CONST = 0,         /* constants[a] */
    R_COPY = 1,          /* x[a] */
    R_SQRT = 2,          /* sqrt(x[a]) */
    R_DIV = 3,           /* x[a] / constants[b] */
    R_RATIO = 4,         /* before = sqrt(x[a]), delta = sqrt(x[b]): delta / before, or delta != 0 where before is 0 */
    R_ZERO_FRACTION = 5, /* 1 - (sum of x[runs[b .. b+c)]) / constants[a] */
    R_RMS = 6,           /* sqrt((sum of x[runs[b .. b+c)]) / constants[a]) */
    R_MAX_ABS = 7,       /* max over c pairs (lo, hi) at runs[b + 2j], runs[b + 2j + 1] of max(-x[lo], x[hi]) */
    R_SHARE = 8,         /* x[a] / class_samples */
    R_HEATMAP16 = 9,     /* grid of c rows, d cols: x[a + i] * scales[b + i], float16-encoded */
    R_HEATMAP32 = 10,    /* the same grid as float32 (fewer than 4 columns) */
    R_COPY32 = 11,       /* x[a .. a+c) as float32 (attention maps) */
    R_SEQUENCE = 12,     /* x[a] / x[a+2], x[a+1] (two values); the general path where x[a+2] <= 0 */
    R_OTHER = 13,        /* max(0, sum of the d shares x[a+i] / class_samples - that of the c at
                          * a + runs[b + j]), each sum added in order */
    R_OPS = 14,
};

static void put_double(char *out, double value) { memcpy(out, &value, sizeof value); }

/* Sum of x over the c indices at runs[b..], in order (as numpy's bincount adds). */
static double run_sum(const float *x, const int64_t *runs, int64_t b, int64_t c) {
    double sum = 0.0;
    for (int64_t j = 0; j < c; j++) sum += (double)x[runs[b + j]];
    return sum;
}

/* Whether every value is finite (NaN and +-Inf make it 0). */
MULTIVERSION
static int all_finite(const float *x, Py_ssize_t n) {
    Py_ssize_t i = 0;
#if HAVE_VECTORS
    const vf zero = {0};
    vi finite = ~(vi){0};
    for (; i + LANES <= n; i += LANES) {
        vf v = load(x + i);
        finite &= (v - v) == zero;
    }
    for (int lane = 0; lane < LANES; lane++)
        if (!finite[lane]) return 0;
#endif
    for (; i < n; i++)
        if (!(x[i] - x[i] == 0.0f)) return 0;
    return 1;
}

PyDoc_STRVAR(render_event_doc,
"render_event(x, program, runs, constants, scales, class_samples, template) -> bytes or None\n\n"
"A copy of `template` (an event's Summary bytes) with every value of the\n"
"float32 packet vector `x` written in, as `program` (int64 [m, 6]: op, dst,\n"
"a, b, c, d; see watch/render.py) says; `runs` (int64) lists the packet\n"
"indices summed per bar, `constants` (float64) the divisors, `scales`\n"
"(float32) the heatmap cells' factors. None where the packet needs the\n"
"general path: a NaN or Inf in `x`, or a heatmap that float16 cannot hold.");

static PyObject *render_event(PyObject *self, PyObject *args) {
    PyObject *x_obj, *program_obj, *runs_obj, *constants_obj, *scales_obj, *template_obj;
    double class_samples;
    if (!PyArg_ParseTuple(args, "OOOOOdO:render_event", &x_obj, &program_obj, &runs_obj,
                          &constants_obj, &scales_obj, &class_samples, &template_obj))
        return NULL;
    Py_buffer x = {0}, program = {0}, runs = {0}, constants = {0}, scales = {0}, template = {0};
    PyObject *result = NULL;
    char *scratch = NULL;
    if (float_buffer(x_obj, &x, 0, "render_event x") < 0) goto done;
    if (float_buffer(scales_obj, &scales, 0, "render_event scales") < 0) goto done;
    if (PyObject_GetBuffer(program_obj, &program, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (PyObject_GetBuffer(runs_obj, &runs, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (PyObject_GetBuffer(constants_obj, &constants, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (PyObject_GetBuffer(template_obj, &template, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (program.len % (6 * 8) || runs.len % 8 || constants.len % 8) {
        PyErr_SetString(PyExc_ValueError, "render_event: program, runs or constants are not 8-byte arrays");
        goto done;
    }
    const float *v = x.buf, *factor = scales.buf;
    const int64_t *code = program.buf, *run = runs.buf;
    const double *k = constants.buf;
    Py_ssize_t n = elements(&x), n_scales = elements(&scales), m = program.len / 48;
    Py_ssize_t n_runs = runs.len / 8, n_constants = constants.len / 8, size = template.len;
    /* Every index is checked before anything is read or written: a wrong
     * program is a ValueError, never a read outside a buffer. */
    Py_ssize_t cells_max = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        const int64_t *op = code + 6 * i;
        int64_t kind = op[0], dst = op[1], a = op[2], b = op[3], c = op[4], d = op[5];
        int64_t width = 8;
        int ok = kind >= 0 && kind < R_OPS && dst >= 0;
        switch (kind) {
        case R_CONST: ok = ok && a >= 0 && a < n_constants; break;
        case R_COPY: case R_SQRT: case R_SHARE: ok = ok && a >= 0 && a < n; break;
        case R_DIV: ok = ok && a >= 0 && a < n && b >= 0 && b < n_constants; break;
        case R_RATIO: ok = ok && a >= 0 && a < n && b >= 0 && b < n; break;
        case R_ZERO_FRACTION: case R_RMS: case R_MAX_ABS: {
            int64_t count = kind == R_MAX_ABS ? 2 * c : c;
            ok = ok && a >= 0 && a < n_constants && b >= 0 && c >= 0 && b + count <= n_runs;
            for (int64_t j = 0; ok && j < count; j++) ok = run[b + j] >= 0 && run[b + j] < n;
            break;
        }
        case R_COPY32:
            ok = ok && c >= 0 && a >= 0 && a <= n - c;
            width = c * 4;
            break;
        case R_SEQUENCE:
            ok = ok && a >= 0 && a <= n - 3;
            width = 16;
            break;
        case R_OTHER:
            ok = ok && d >= 0 && a >= 0 && a <= n - d && b >= 0 && c >= 0 && b + c <= n_runs;
            for (int64_t j = 0; ok && j < c; j++) ok = run[b + j] >= 0 && run[b + j] < d;
            break;
        default: /* heatmaps */
            ok = ok && c >= 1 && d >= 1 && c * d <= n && a >= 0 && a <= n - c * d
                 && b >= 0 && b <= n_scales - c * d && (kind == R_HEATMAP32 || d >= 4);
            width = kind == R_HEATMAP32 ? c * d * 4 : (c + 1) * d * 2;
            if (ok && (c + 1) * d * 2 > cells_max) cells_max = (c + 1) * d * 2;
        }
        if (!ok || dst > size - width) {
            PyErr_Format(PyExc_ValueError, "render_event: instruction %zd (op %lld) is out of range",
                         i, (long long)kind);
            goto done;
        }
    }
    if (!all_finite(v, n)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* Grid cells (float32) then their encoding, aligned, per heatmap. */
    scratch = PyMem_Malloc(cells_max * 3 + 16);
    result = PyBytes_FromStringAndSize(NULL, size);
    if (scratch == NULL || result == NULL) {
        Py_CLEAR(result);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    char *out = PyBytes_AS_STRING(result);
    /* The general path takes the event where this program cannot. */
    int general = 0;
    /* Without the GIL: the bytes are nobody else's yet, and the training
     * thread's Python need not wait for the writer thread's rendering. */
    Py_BEGIN_ALLOW_THREADS
    memcpy(out, template.buf, size);
    for (Py_ssize_t i = 0; i < m; i++) {
        const int64_t *op = code + 6 * i;
        int64_t a = op[2], b = op[3], c = op[4], d = op[5];
        char *to = out + op[1];
        switch (op[0]) {
        case R_CONST: put_double(to, k[a]); break;
        case R_COPY: put_double(to, (double)v[a]); break;
        case R_SQRT: put_double(to, sqrt((double)v[a])); break;
        case R_DIV: put_double(to, (double)v[a] / k[b]); break;
        case R_RATIO: {
            double before = sqrt((double)v[a]), delta = sqrt((double)v[b]);
            put_double(to, before == 0.0 ? (delta != 0.0 ? 1.0 : 0.0) : delta / before);
            break;
        }
        case R_ZERO_FRACTION: put_double(to, 1.0 - run_sum(v, run, b, c) / k[a]); break;
        case R_RMS: put_double(to, sqrt(run_sum(v, run, b, c) / k[a])); break;
        case R_MAX_ABS: {
            double top = -INFINITY;
            for (int64_t j = 0; j < c; j++) {
                double low = -(double)v[run[b + 2 * j]], high = (double)v[run[b + 2 * j + 1]];
                /* numpy's maximum of equal values gives its second operand
                 * (matters for zeros: -0.0 against 0.0, a dead layer's). */
                double biggest = low > high ? low : high;
                top = top > biggest ? top : biggest;
            }
            put_double(to, top);
            break;
        }
        case R_SHARE: put_double(to, (double)v[a] / class_samples); break;
        case R_COPY32: memcpy(to, v + a, (size_t)c * 4); break;
        case R_SEQUENCE: {
            double positions = (double)v[a + 2];
            if (!(positions > 0.0)) { /* no sequence bars this step */
                general = 1;
                goto rendered;
            }
            put_double(to, (double)v[a] / positions);
            put_double(to + 8, (double)v[a + 1]);
            break;
        }
        case R_OTHER: {
            double total = 0.0, kept = 0.0;
            for (int64_t i = 0; i < d; i++) total += (double)v[a + i] / class_samples;
            for (int64_t j = 0; j < c; j++) kept += (double)v[a + run[b + j]] / class_samples;
            double rest = total - kept;
            put_double(to, rest > 0.0 ? rest : 0.0);
            break;
        }
        default: {
            float *cells = (float *)scratch;
            Py_ssize_t count = c * d;
            for (Py_ssize_t j = 0; j < count; j++) cells[j] = v[a + j] * factor[b + j];
            if (op[0] == R_HEATMAP32) {
                memcpy(to, cells, (size_t)count * 4);
            } else {
                uint16_t *halves = (uint16_t *)(scratch + ((cells_max * 2 + 15) & ~(Py_ssize_t)15));
                if (!encode_grid(cells, c, d, halves)) { /* the float32 form */
                    general = 1;
                    goto rendered;
                }
                memcpy(to, halves, (size_t)(c + 1) * d * 2);
            }
        }
        }
    }
rendered:
    Py_END_ALLOW_THREADS
    if (general) Py_SETREF(result, Py_NewRef(Py_None));
done:
    PyMem_Free(scratch);
    if (template.obj) PyBuffer_Release(&template);
    if (constants.obj) PyBuffer_Release(&constants);
    if (runs.obj) PyBuffer_Release(&runs);
    if (program.obj) PyBuffer_Release(&program);
    if (scales.obj) PyBuffer_Release(&scales);
    if (x.obj) PyBuffer_Release(&x);
    return result;
}

/* -- copies (watch/cpu_pass.py's weights before the step) ------------------ */

typedef struct {
    Py_buffer *sources, *targets;
    Task *tasks;
    Py_ssize_t count;
} Copies;

static void copy_task(void *context, Py_ssize_t index, int worker) {
    Copies *job = context;
    const Task *task = &job->tasks[index];
    (void)worker;
    memcpy((float *)job->targets[task->k].buf + task->a, (const float *)job->sources[task->k].buf + task->a,
           (size_t)(task->b - task->a) * sizeof(float));
}

PyDoc_STRVAR(copy_arrays_doc,
"copy_arrays(sources, targets) -> None\n\n"
"Copies each float32 array of `sources` into the C-contiguous float32 array\n"
"of `targets` of the same size, in chunks that PyTorch's threads share.");

static PyObject *copy_arrays(PyObject *self, PyObject *args) {
    PyObject *sources_obj, *targets_obj;
    if (!PyArg_ParseTuple(args, "OO:copy_arrays", &sources_obj, &targets_obj)) return NULL;
    Py_buffer *sources = NULL, *targets = NULL;
    Py_ssize_t count = float_buffers(sources_obj, &sources, "copy_arrays"), others = -1;
    Copies job = {NULL, NULL, NULL, 0};
    if (count < 0) goto done;
    others = writable_buffers(targets_obj, &targets, "copy_arrays targets");
    if (others < 0) goto done;
    if (others != count) {
        PyErr_Format(PyExc_ValueError, "copy_arrays: %zd sources and %zd targets", count, others);
        goto done;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        if (sources[k].len != targets[k].len) {
            PyErr_Format(PyExc_ValueError, "copy_arrays: pair %zd has %zd and %zd values", k,
                         elements(&sources[k]), elements(&targets[k]));
            goto done;
        }
        job.count = add_tasks(NULL, job.count, 0, k, elements(&sources[k]), CHUNK);
    }
    job.tasks = PyMem_RawMalloc((size_t)(job.count ? job.count : 1) * sizeof(Task));
    if (job.tasks == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0, at = 0; k < count; k++) at = add_tasks(job.tasks, at, 0, k, elements(&sources[k]), CHUNK);
    job.sources = sources;
    job.targets = targets;
    {
        int threads = task_threads();
        Py_BEGIN_ALLOW_THREADS
        run_tasks(copy_task, &job, job.count, threads);
        Py_END_ALLOW_THREADS
    }
done:
    PyMem_RawFree(job.tasks);
    if (sources != NULL) release_all(sources, count);
    if (targets != NULL) release_all(targets, others);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_threads_doc,
"set_threads(limit) -> (previous limit, threads the next pass gets)\n\n"
"A test seam: at most `limit` threads for the split passes (0: PyTorch's\n"
"setting). Results do not depend on it (see CHUNK).");

static PyObject *set_threads(PyObject *self, PyObject *limit) {
    long value = PyLong_AsLong(limit);
    if (value == -1 && PyErr_Occurred()) return NULL;
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "set_threads: the limit must be >= 0");
        return NULL;
    }
    int previous = thread_limit;
    thread_limit = (int)value;
    return Py_BuildValue("(ii)", previous, task_threads());
}

PyDoc_STRVAR(set_portable_only_doc,
"set_portable_only(flag) -> bool\n\n"
"A test seam: with a true flag the portable kernels run even where AVX2 and\n"
"F16C exist. Returns the previous setting.");

static PyObject *set_portable_only(PyObject *self, PyObject *flag) {
    int value = PyObject_IsTrue(flag);
    if (value < 0) return NULL;
    int previous = portable_only;
    portable_only = value;
    return PyBool_FromLong(previous);
}

static PyMethodDef methods[] = {
    {"set_portable_only", set_portable_only, METH_O, set_portable_only_doc},
    {"set_threads", set_threads, METH_O, set_threads_doc},
    {"copy_arrays", copy_arrays, METH_VARARGS, copy_arrays_doc},
    {"gradient_statistics", gradient_statistics, METH_VARARGS, gradient_statistics_doc},
    {"update_statistics", update_statistics, METH_VARARGS, update_statistics_doc},
    {"parameter_statistics", parameter_statistics, METH_VARARGS, parameter_statistics_doc},
    {"output_statistics", output_statistics, METH_O, output_statistics_doc},
    {"class_statistics", class_statistics, METH_VARARGS, class_statistics_doc},
    {"encode_heatmap", encode_heatmap, METH_VARARGS, encode_heatmap_doc},
    {"render_event", render_event, METH_VARARGS, render_event_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused",
    "One-pass float32 statistics for watch() on the CPU (see fused.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__fused(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
#if HAVE_TASK_THREADS
    pthread_atfork(NULL, NULL, note_forked_child);
#endif
    Unreadable = PyErr_NewExceptionWithDoc(
        "torch_visualization._fused.Unreadable",
        "Data the kernels do not read: not float32, not C-contiguous, or read-only where written.",
        PyExc_TypeError, NULL);
    if (Unreadable == NULL || PyModule_AddObjectRef(m, "Unreadable", Unreadable) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
