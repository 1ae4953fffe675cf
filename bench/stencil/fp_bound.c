/* The arithmetic bound of the radius-2 star stencil (BENCHMARKS.md,
 * "The stencil's 80 % target: what bounds it").
 *
 * Each output vector of eight f64 values of the 9-point star in its fixed
 * evaluation order costs one multiply and eight fused multiply-adds (a
 * point's sum may not be reassociated), four lane shifts that form the
 * row's own neighbours from three aligned vectors, and one add into OUT.
 * This program issues such mixes as independent chains, two output
 * vectors' worth per loop iteration (with one, the FMA chains alone cannot
 * fill the pipes: 5.3 instead of 4.5 cycles for nine FMAs), with no memory
 * traffic, and prints the cycles per output vector, the core clock
 * (measured by a chain of dependent integer adds) and the least time per
 * point that mix allows. Then the same with each point's sum as one
 * dependent chain (multiply, eight FMAs), as the kernel computes it, its
 * inputs loaded from the first-level cache: eight output vectors per
 * iteration.
 *
 *   gcc -O2 -march=native bench/stencil/fp_bound.c -o /tmp/fp_bound && /tmp/fp_bound
 *
 * Needs a CPU with AVX-512F. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define N 50000000L
#define U 2 /* output vectors per loop iteration */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* cycles per second: four dependent one-cycle adds per loop iteration */
static double clock_hz(void) {
    long n = 2000000000L, x = 0;
    double t = now();
    __asm__ volatile("1: add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0\n sub $4, %1\n jnz 1b"
                     : "+r"(x), "+r"(n));
    return 2e9 / (now() - t);
}

static double checksum;

/* per output vector: NF fused multiply-adds, NA lane shifts by valignq,
 * NS in-lane shuffles by vshufpd, NP two-source permutes (vpermt2q) and
 * ND adds, each operation in a chain of its own */
#define RUN(NAME, NF, NA, NS, NP, ND)                                                   \
    do {                                                                                \
        __m512d f[U * NF + 1], s[U * NS + 1], d[U * ND + 1];                            \
        __m512i a[U * NA + 1], p[U * NP + 1];                                           \
        for (int i = 0; i < U * NF + 1; i++) f[i] = _mm512_set1_pd(1.0 + 0.1 * i);      \
        for (int i = 0; i < U * NS + 1; i++) s[i] = _mm512_set1_pd(i);                  \
        for (int i = 0; i < U * ND + 1; i++) d[i] = _mm512_set1_pd(i);                  \
        for (int i = 0; i < U * NA + 1; i++) a[i] = _mm512_set1_epi64(i);               \
        for (int i = 0; i < U * NP + 1; i++) p[i] = _mm512_set1_epi64(i);               \
        __m512d w = _mm512_set1_pd(0.999999);                                           \
        __m512i c = _mm512_set1_epi64(7), idx = _mm512_set_epi64(9, 8, 7, 6, 5, 4, 3, 2); \
        double t = now();                                                               \
        for (long n = 0; n < N; n++) {                                                  \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NF; i++) f[i] = _mm512_fmadd_pd(f[i], w, w); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NA; i++) a[i] = _mm512_alignr_epi64(a[i], c, 3); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NS; i++) s[i] = _mm512_shuffle_pd(s[i], w, 0x55); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NP; i++) p[i] = _mm512_permutex2var_epi64(p[i], idx, c); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * ND; i++) d[i] = _mm512_add_pd(d[i], w); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NF; i++) __asm__ volatile("" ::"v"(f[i])); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NA; i++) __asm__ volatile("" ::"v"(a[i])); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NS; i++) __asm__ volatile("" ::"v"(s[i])); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * NP; i++) __asm__ volatile("" ::"v"(p[i])); \
            _Pragma("GCC unroll 32") for (int i = 0; i < U * ND; i++) __asm__ volatile("" ::"v"(d[i])); \
        }                                                                               \
        double cyc = (now() - t) * hz / N / U;                                          \
        printf("  %-52s %5.2f cycles  %6.3f ns per point\n", NAME, cyc, cyc / 8 / hz * 1e9); \
        checksum += f[0][0] + s[0][0] + d[0][0] + (double)a[0][0] + (double)p[0][0];    \
    } while (0)

static double line[16 * 8] __attribute__((aligned(64)));

/* V output vectors per iteration, each: two vectors loaded (L1), four
 * shifts of them (valignq, or valignq for +-2 and vshufpd for +-1 when
 * SHUF), the multiply and eight FMAs as one chain, the add into a
 * running sum */
#define CHAIN(NAME, SHUF)                                                                 \
    do {                                                                                  \
        enum { V = 8 };                                                                   \
        __m512d acc[V];                                                                   \
        for (int v = 0; v < V; v++) acc[v] = _mm512_set1_pd(v);                           \
        __m512d w = _mm512_set1_pd(0.999999);                                             \
        double t = now();                                                                 \
        for (long n = 0; n < N; n++) {                                                    \
            const double *q = line;                                                       \
            __asm__ volatile("" : "+r"(q));                                               \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) {                         \
                __m512d x = _mm512_load_pd(q + 16 * v), y = _mm512_load_pd(q + 16 * v + 8); \
                __m512i xi = _mm512_castpd_si512(x), yi = _mm512_castpd_si512(y);         \
                __m512d m2 = _mm512_castsi512_pd(_mm512_alignr_epi64(xi, yi, 6));         \
                __m512d p2 = _mm512_castsi512_pd(_mm512_alignr_epi64(yi, xi, 2));         \
                __m512d m1 = SHUF ? _mm512_shuffle_pd(m2, x, 0x55)                        \
                                  : _mm512_castsi512_pd(_mm512_alignr_epi64(xi, yi, 7));  \
                __m512d p1 = SHUF ? _mm512_shuffle_pd(x, p2, 0x55)                        \
                                  : _mm512_castsi512_pd(_mm512_alignr_epi64(yi, xi, 1));  \
                __m512d a = _mm512_mul_pd(w, x);                                          \
                a = _mm512_fmadd_pd(w, y, a);                                             \
                a = _mm512_fmadd_pd(w, x, a);                                             \
                a = _mm512_fmadd_pd(w, y, a);                                             \
                a = _mm512_fmadd_pd(w, x, a);                                             \
                a = _mm512_fmadd_pd(w, m2, a);                                            \
                a = _mm512_fmadd_pd(w, m1, a);                                            \
                a = _mm512_fmadd_pd(w, p1, a);                                            \
                a = _mm512_fmadd_pd(w, p2, a);                                            \
                acc[v] = _mm512_add_pd(acc[v], a);                                        \
            }                                                                             \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) __asm__ volatile("" ::"v"(acc[v])); \
        }                                                                                 \
        double cyc = (now() - t) * hz / N / V;                                            \
        printf("  %-52s %5.2f cycles  %6.3f ns per point\n", NAME, cyc, cyc / 8 / hz * 1e9); \
        for (int v = 0; v < V; v++) checksum += acc[v][0];                                \
    } while (0)

int main(void) {
    if (!__builtin_cpu_supports("avx512f")) {
        printf("no AVX-512F on this CPU\n");
        return 0;
    }
    double hz = clock_hz();
    printf("core clock %.2f GHz; per output vector of 8 values:\n", hz / 1e9);
    RUN("9 FMA (the sum alone)", 9, 0, 0, 0, 0);
    RUN("9 FMA + 1 add (into OUT)", 9, 0, 0, 0, 1);
    RUN("9 FMA + 4 valignq + 1 add (the kernel's mix)", 9, 4, 0, 0, 1);
    RUN("9 FMA + 2 valignq + 2 vshufpd + 1 add (same bits)", 9, 2, 2, 0, 1);
    RUN("9 FMA + 4 vpermt2q + 1 add", 9, 0, 0, 4, 1);
    printf("each point's sum one dependent chain, inputs from L1:\n");
    CHAIN("9 FMA + 4 valignq + 1 add (the kernel's mix)", 0);
    CHAIN("9 FMA + 2 valignq + 2 vshufpd + 1 add (same bits)", 1);
    printf("(checksum %g)\n", checksum);
    return 0;
}
