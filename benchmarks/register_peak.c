/* Register-level arithmetic peaks of this x86 CPU: FP32 FMA, BF16 dot products and INT8 (u8 x s8) dot
 * products, on N threads, with no memory traffic at all. Built by benchmarks/peak.py with the system C
 * compiler into a temporary folder and called through ctypes.
 *
 * Each kernel keeps independent dependency chains in vector registers, more than latency x throughput of the
 * instruction on current cores (FMA: 4-5 cycles x 2 ports), so the loop is bound by the execution ports alone;
 * chains and operands must all fit the register file (32 zmm, but 16 ymm: 16 ymm chains plus their operands
 * spilled one chain to memory and measured AVX2-only CPUs 1.65x below what ONNX Runtime's convolution reached). Functions carry their own target attributes, so the file compiles with plain
 * `cc -O2` and each kernel is only called when the CPU reports the instruction set (sd_supported).
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define ZMM_CHAINS 16
#define YMM_CHAINS 12
#define AVX2_INT8_CHAINS 8 /* each needs two temporaries besides its accumulator */

enum kind { FP32_AVX512 = 0, BF16_AVX512 = 1, INT8_AVX512_VNNI = 2, FP32_AVX2 = 3, INT8_AVX_VNNI = 4,
            INT8_AVX2 = 5, KINDS = 6 };

/* Operations one loop iteration performs: multiply and add count as two, per lane. */
static const double OPS_PER_ITERATION[KINDS] = {
    ZMM_CHAINS * 16 * 2,        /* vfmadd231ps zmm: 16 lanes */
    ZMM_CHAINS * 16 * 2 * 2,    /* vdpbf16ps zmm: 16 lanes x 2 bf16 pairs */
    ZMM_CHAINS * 16 * 4 * 2,    /* vpdpbusd zmm: 16 lanes x 4 u8*s8 pairs */
    YMM_CHAINS * 8 * 2,         /* vfmadd231ps ymm */
    YMM_CHAINS * 8 * 4 * 2,     /* vpdpbusd ymm (AVX-VNNI) */
    AVX2_INT8_CHAINS * 16 * 2 * 2, /* vpmaddubsw + vpmaddwd + vpaddd ymm: 16 words x 2 pairs */
};

int sd_supported(int kind) {
    __builtin_cpu_init();
    switch (kind) {
    case FP32_AVX512: return __builtin_cpu_supports("avx512f");
    case BF16_AVX512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    case INT8_AVX512_VNNI: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
    case FP32_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case INT8_AVX_VNNI: return __builtin_cpu_supports("avxvnni");
    case INT8_AVX2: return __builtin_cpu_supports("avx2");
    default: return 0;
    }
}

double sd_ops_per_iteration(int kind) { return kind >= 0 && kind < KINDS ? OPS_PER_ITERATION[kind] : 0.0; }

/* One lane of the sum is returned so the compiler cannot drop the loop; its value is meaningless. */
#define RUN_CHAINS(CHAINS, VEC, SETUP, STEP, REDUCE, SCALAR)                              \
    VEC acc[CHAINS];                                                             \
    SETUP;                                                                       \
    for (int i = 0; i < CHAINS; i++) acc[i] = init;                              \
    for (long n = 0; n < iterations; n++) {                                      \
        _Pragma("GCC unroll 16")                                                 \
        for (int i = 0; i < CHAINS; i++) STEP;                                   \
    }                                                                            \
    for (int i = 1; i < CHAINS; i++) REDUCE;                                     \
    return SCALAR;

__attribute__((target("avx512f"))) static float fp32_avx512(long iterations) {
    RUN_CHAINS(ZMM_CHAINS, __m512, __m512 init = _mm512_set1_ps(1e-3f); __m512 a = _mm512_set1_ps(0.999f);
               __m512 b = _mm512_set1_ps(1e-6f),
               acc[i] = _mm512_fmadd_ps(acc[i], a, b), acc[0] = _mm512_add_ps(acc[0], acc[i]), _mm512_cvtss_f32(acc[0]))
}

__attribute__((target("avx512f,avx512bf16"))) static float bf16_avx512(long iterations) {
    RUN_CHAINS(ZMM_CHAINS, __m512, __m512 init = _mm512_set1_ps(0.0f);
               __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f)),
               acc[i] = _mm512_dpbf16_ps(acc[i], a, a), acc[0] = _mm512_add_ps(acc[0], acc[i]), _mm512_cvtss_f32(acc[0]))
}

__attribute__((target("avx512f,avx512vnni"))) static float int8_avx512_vnni(long iterations) {
    RUN_CHAINS(ZMM_CHAINS, __m512i, __m512i init = _mm512_setzero_si512(); __m512i a = _mm512_set1_epi8(3);
               __m512i b = _mm512_set1_epi8(-2),
               acc[i] = _mm512_dpbusd_epi32(acc[i], a, b), acc[0] = _mm512_add_epi32(acc[0], acc[i]),
               (float)_mm512_cvtsi512_si32(acc[0]))
}

__attribute__((target("avx2,fma"))) static float fp32_avx2(long iterations) {
    RUN_CHAINS(YMM_CHAINS, __m256, __m256 init = _mm256_set1_ps(1e-3f); __m256 a = _mm256_set1_ps(0.999f);
               __m256 b = _mm256_set1_ps(1e-6f),
               acc[i] = _mm256_fmadd_ps(acc[i], a, b), acc[0] = _mm256_add_ps(acc[0], acc[i]), _mm256_cvtss_f32(acc[0]))
}

__attribute__((target("avx2,avxvnni"))) static float int8_avx_vnni(long iterations) {
    RUN_CHAINS(YMM_CHAINS, __m256i, __m256i init = _mm256_setzero_si256(); __m256i a = _mm256_set1_epi8(3);
               __m256i b = _mm256_set1_epi8(-2),
               acc[i] = _mm256_dpbusd_avx_epi32(acc[i], a, b), acc[0] = _mm256_add_epi32(acc[0], acc[i]),
               (float)_mm256_cvtsi256_si32(acc[0]))
}

/* Without VNNI, MLAS's u8 x s8 path: vpmaddubsw (u8*s8 pairs -> s16), vpmaddwd by ones (-> s32), vpaddd. */
__attribute__((target("avx2"))) static float int8_avx2(long iterations) {
    __m256i acc[AVX2_INT8_CHAINS];
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (int i = 0; i < AVX2_INT8_CHAINS; i++) acc[i] = _mm256_setzero_si256();
    for (long n = 0; n < iterations; n++) {
#pragma GCC unroll 16
        for (int i = 0; i < AVX2_INT8_CHAINS; i++) {
            __asm__ volatile("" : "+x"(a)); /* `a` as if reloaded: stops the compiler hoisting the products */
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
        }
    }
    for (int i = 1; i < AVX2_INT8_CHAINS; i++) acc[0] = _mm256_add_epi32(acc[0], acc[i]);
    return (float)_mm256_cvtsi256_si32(acc[0]);
}

struct job { int kind; long iterations; volatile float sink; };

static void *run_job(void *argument) {
    struct job *job = argument;
    switch (job->kind) {
    case FP32_AVX512: job->sink = fp32_avx512(job->iterations); break;
    case BF16_AVX512: job->sink = bf16_avx512(job->iterations); break;
    case INT8_AVX512_VNNI: job->sink = int8_avx512_vnni(job->iterations); break;
    case FP32_AVX2: job->sink = fp32_avx2(job->iterations); break;
    case INT8_AVX_VNNI: job->sink = int8_avx_vnni(job->iterations); break;
    case INT8_AVX2: job->sink = int8_avx2(job->iterations); break;
    }
    return 0;
}

/* Wall seconds for `threads` threads each running `iterations` loop iterations of `kind`; -1 on error. */
double sd_run(int kind, int threads, long iterations) {
    if (kind < 0 || kind >= KINDS || threads < 1 || threads > 256 || !sd_supported(kind)) return -1.0;
    pthread_t handles[256];
    struct job jobs[256];
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int started = 0;
    for (; started < threads; started++) {
        jobs[started].kind = kind;
        jobs[started].iterations = iterations;
        if (pthread_create(&handles[started], 0, run_job, &jobs[started]) != 0) break;
    }
    for (int t = 0; t < started; t++) pthread_join(handles[t], 0);
    if (started < threads) return -1.0;
    clock_gettime(CLOCK_MONOTONIC, &end);
    return (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) * 1e-9;
}
