/* The arithmetic bound of the radius-2 star stencil in cache (BENCHMARKS.md,
 * "The stencil's 80 % target: what bounds it").
 *
 * Each output vector of eight f64 values of the 9-point star in its fixed
 * evaluation order costs one multiply and eight fused multiply-adds (a
 * point's sum may not be reassociated), four lane shifts forming the row's
 * own neighbours from three aligned vectors, and one add into OUT. This
 * program issues those operations as independent chains (no memory
 * traffic, no dependence that the out-of-order core could not hide) and
 * prints the cycles they take per output vector, the core clock measured
 * by a chain of dependent integer adds, and the resulting least time per
 * point.
 *
 *   gcc -O2 -march=native bench/stencil/fp_bound.c -o /tmp/fp_bound && /tmp/fp_bound
 *
 * Needs a CPU with AVX-512F. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define N 100000000L

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

static __m512d a[9], d[1];
static __m512i b[4];

/* NF fused multiply-adds, NS shifts (valignq, or vpermt2q when PERM) and
 * NA adds per iteration, each in its own chain */
#define RUN(NAME, NF, NS, NA, PERM)                                                   \
    do {                                                                              \
        __m512d w = _mm512_set1_pd(0.999999);                                         \
        __m512i c = _mm512_set1_epi64(7), idx = _mm512_set_epi64(9, 8, 7, 6, 5, 4, 3, 2); \
        double t = now();                                                             \
        for (long n = 0; n < N; n++) {                                                \
            _Pragma("GCC unroll 9") for (int i = 0; i < NF; i++) a[i] = _mm512_fmadd_pd(a[i], w, w); \
            _Pragma("GCC unroll 4") for (int i = 0; i < NS; i++) b[i] = PERM              \
                ? _mm512_permutex2var_epi64(b[i], idx, c)                             \
                : _mm512_alignr_epi64(b[i], c, 3);                                    \
            _Pragma("GCC unroll 1") for (int i = 0; i < NA; i++) d[i] = _mm512_add_pd(d[i], w); \
            __asm__ volatile("" ::"v"(a[0]), "v"(a[1]), "v"(a[2]), "v"(a[3]), "v"(a[4]),      \
                             "v"(a[5]), "v"(a[6]), "v"(a[7]), "v"(a[8]));             \
            __asm__ volatile("" ::"v"(b[0]), "v"(b[1]), "v"(b[2]), "v"(b[3]), "v"(d[0]));   \
        }                                                                             \
        double cyc = (now() - t) * hz / N;                                            \
        printf("  %-44s %5.2f cycles  %6.3f ns per point\n", NAME, cyc, cyc / 8 / hz * 1e9); \
    } while (0)

int main(void) {
    if (!__builtin_cpu_supports("avx512f")) {
        printf("no AVX-512F on this CPU\n");
        return 0;
    }
    for (int i = 0; i < 9; i++) a[i] = _mm512_set1_pd(1.0 + 0.1 * i);
    d[0] = a[0];
    for (int i = 0; i < 4; i++) b[i] = _mm512_set1_epi64(i);
    double hz = clock_hz();
    printf("core clock %.2f GHz; per output vector of 8 values:\n", hz / 1e9);
    RUN("9 FMA (the sum alone)", 9, 0, 0, 0);
    RUN("9 FMA + 1 add (into OUT)", 9, 0, 1, 0);
    RUN("9 FMA + 4 valignq + 1 add (the kernel's mix)", 9, 4, 1, 0);
    RUN("9 FMA + 4 vpermt2q + 1 add", 9, 4, 1, 1);
    double s = 0;
    for (int i = 0; i < 9; i++) s += a[i][0];
    for (int i = 0; i < 4; i++) s += (double)b[i][0];
    printf("(checksum %g)\n", s + d[0][0]);
    return 0;
}
