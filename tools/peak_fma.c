/* peak_fma.c — this core's peak fp32 multiply-add rate, for the benchmark's roofline bound.
 *
 *     peak_fma [SECONDS]
 *
 * Prints one line:  macs_per_s=R hz=F macs_per_cycle=C lanes=L isa=NAME
 *
 * macs_per_s: ACC independent accumulator chains of vector FMAs (the widest the compiler was told
 * about with -march=native: AVX-512, AVX2+FMA, else scalar fmaf), enough chains to cover the FMA
 * latency on every pipe, best of several trials of about SECONDS/16 each.
 * hz: the clock, measured as the rate of a chain of dependent integer adds (one per cycle on every
 * x86-64 core; 0 where that is not x86-64), so macs_per_cycle = macs_per_s / hz.
 * Both are timed in this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: on a shared
 * machine a time-sliced trial would otherwise read a lower rate.
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#define ACC 16

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__AVX512F__)
#define LANES 16
#define ISA "avx512f"
typedef __m512 vec_t;
#define VSET(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(a) _mm512_reduce_add_ps(a)
#elif defined(__AVX2__) && defined(__FMA__)
#define LANES 8
#define ISA "avx2+fma"
typedef __m256 vec_t;
#define VSET(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static float VSUM(__m256 a)
{
  float t[8];
  int i;
  float s = 0.0f;
  _mm256_storeu_ps(t, a);
  for (i = 0; i < 8; i++)
    s += t[i];
  return s;
}
#else
#define LANES 1
#define ISA "scalar"
typedef float vec_t;
#define VSET(x) (x)
#define VFMA(a, b, c) fmaf(a, b, c)
#define VADD(a, b) ((a) + (b))
#define VSUM(a) (a)
#endif

/* ACC independent chains acc = acc * m + c; returns a sum so nothing is dead code. */
static float fma_chains(long iters, float seed)
{
  vec_t acc[ACC], m = VSET(0.999999f), c = VSET(1e-7f), s;
  long i;
  int k;
  for (k = 0; k < ACC; k++)
    acc[k] = VSET(seed + (float)k);
  for (i = 0; i < iters; i++)
    for (k = 0; k < ACC; k++)
      acc[k] = VFMA(acc[k], m, c);
  s = acc[0];
  for (k = 1; k < ACC; k++)
    s = VADD(s, acc[k]);
  return VSUM(s);
}

static double clock_hz(double seconds)
{
#if defined(__x86_64__)
  long iters = 1000000, i;
  double t0, t;
  uint64_t x = 0;
  for (;;) {
    t0 = now_s();
    for (i = 0; i < iters; i++)
      __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                       "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    t = now_s() - t0;
    if (t > seconds)
      return 8.0 * (double)iters / t;
    iters *= 2;
  }
#else
  (void)seconds;
  return 0.0;
#endif
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 0.4, best = 0.0, best_hz = 0.0, t, t0, hz;
  long iters = 1000;
  float sink = 0.0f;
  int trial;
  if (seconds <= 0.0) {
    fprintf(stderr, "usage: %s [SECONDS > 0]\n", argv[0]);
    return 1;
  }
  for (;;) {  /* calibrate: one trial lasts about seconds/8 */
    t0 = now_s();
    sink += fma_chains(iters, 1.0f);
    if (now_s() - t0 > seconds / 16.0 / 4.0)
      break;
    iters *= 2;
  }
  iters *= 4;
  for (trial = 0; trial < 8; trial++) {
    t0 = now_s();
    sink += fma_chains(iters, (float)trial);
    t = now_s() - t0;
    if ((double)iters * ACC * LANES / t > best)
      best = (double)iters * ACC * LANES / t;
    hz = clock_hz(seconds / 32.0);
    if (hz > best_hz)
      best_hz = hz;
  }
  printf("macs_per_s=%.6g hz=%.6g macs_per_cycle=%.3f lanes=%d isa=%s sink=%g\n", best, best_hz,
         best_hz > 0.0 ? best / best_hz : 0.0, LANES, ISA, (double)(sink != sink ? 0.0f : 1.0f));
  return 0;
}
