/* bench_main.c — time eg_train_step of a generated model on the host.
 *
 * Linked with a build's model.c and the runtime_c kernels (not eg_proto.c, not a port):
 *
 *     bench_host [--cpu] STEPS [WARMUP [DUMP]]
 *
 * Fills every INPUT buffer with fixed pseudo-random values in [-1, 1) and every TARGET buffer
 * with zeros (label 0), runs WARMUP untimed steps, then STEPS timed steps, and prints one line:
 *
 *     steps=N median_us=M min_us=M mean_us=M loss_first=L loss_last=L peak_rss_kib=K
 *
 * peak_rss_kib is this process's VmHWM from /proc/self/status (0 where there is none): unlike the
 * parent's wait4 ru_maxrss it does not count the forking parent's pages from before the exec.
 * The arena is reused, so a step may overwrite its own input: the input is copied back before
 * every step, outside the timed region (clock_gettime(CLOCK_MONOTONIC) around eg_train_step only;
 * with --cpu, CLOCK_PROCESS_CPUTIME_ID: the CPU time the step used, which time slicing by other
 * jobs on a shared machine does not inflate).
 * The trainer updates its parameters every step; with a small learning rate that leaves the
 * arithmetic representative (loss_first/loss_last show it stays finite).
 * With DUMP, every PARAM buffer is written to that file after the last step, each as a text line
 * "NAME BYTES" followed by BYTES raw bytes (the benchmark's gradient check: `bench_host 1 0 DUMP`
 * is the model after one step from its initial weights).
 * Exit status: 0, 1 on bad arguments, 2 if the loss is not finite.
 *
 * Built with -DEG_PROFILE against a model.c whose eg_train_step stores each call's duration in
 * eg_prof_ns[i] (tools/hostbench.py --profile writes that copy), it also prints one line per call
 * after the summary: "call=I median_ns=T" (the median over the timed steps).
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

#define MAX_INPUTS 8

static clockid_t step_clock = CLOCK_MONOTONIC;

#ifdef EG_PROFILE
extern uint64_t eg_prof_ns[];
extern const uint32_t eg_prof_calls;
#endif

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(step_clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* The inputs as first written: copied back into the arena before each step. */
static float *saved[MAX_INPUTS];
static const eg_buffer_t *inputs[MAX_INPUTS];
static uint32_t num_inputs;

static void load_inputs(void)
{
  uint32_t i;
  for (i = 0; i < num_inputs; i++)
    memcpy(inputs[i]->data, saved[i], inputs[i]->bytes);
  for (i = 0; i < eg_num_buffers; i++)
    if (eg_buffers[i].kind == EG_BUF_TARGET)
      memset(eg_buffers[i].data, 0, eg_buffers[i].bytes);  /* label 0, whatever the int width */
}

static long peak_rss_kib(void)
{
  char line[256];
  long kib = 0;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmHWM:", 6) == 0)
      kib = strtol(line + 6, NULL, 10);
  fclose(f);
  return kib;
}

static int dump_params(const char *path)
{
  uint32_t i;
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  for (i = 0; i < eg_num_buffers; i++) {
    if (eg_buffers[i].kind != EG_BUF_PARAM)
      continue;
    fprintf(f, "%s %lu\n", eg_buffers[i].name, (unsigned long)eg_buffers[i].bytes);
    fwrite(eg_buffers[i].data, 1, eg_buffers[i].bytes, f);
  }
  return fclose(f) == 0 ? 0 : -1;
}

static int prepare_inputs(void)
{
  uint32_t i, j, state = 12345u;
  for (i = 0; i < eg_num_buffers; i++) {
    if (eg_buffers[i].kind != EG_BUF_INPUT)
      continue;
    if (num_inputs == MAX_INPUTS) {
      fprintf(stderr, "bench: more than %d inputs\n", MAX_INPUTS);
      return -1;
    }
    inputs[num_inputs] = &eg_buffers[i];
    saved[num_inputs] = malloc(eg_buffers[i].bytes);
    if (saved[num_inputs] == NULL)
      return -1;
    for (j = 0; j < eg_buffers[i].bytes / 4; j++) {
      state = state * 1664525u + 1013904223u;  /* Numerical Recipes LCG */
      saved[num_inputs][j] = (float)(state >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    num_inputs++;
  }
  return 0;
}

int main(int argc, char **argv)
{
  long steps, warmup, i;
  uint64_t *times, total = 0;
  float loss = 0.0f, loss_first = 0.0f;

  if (argc > 1 && strcmp(argv[1], "--cpu") == 0) {
    step_clock = CLOCK_PROCESS_CPUTIME_ID;
    argv++;
    argc--;
  }
  if (argc < 2 || argc > 4) {
    fprintf(stderr, "usage: bench_host [--cpu] STEPS [WARMUP [DUMP]]\n");
    return 1;
  }
  steps = strtol(argv[1], NULL, 10);
  warmup = argc > 2 ? strtol(argv[2], NULL, 10) : steps / 10 + 1;
  if (steps < 1 || warmup < 0) {
    fprintf(stderr, "bench: STEPS must be >= 1 and WARMUP >= 0\n");
    return 1;
  }
  times = malloc((size_t)steps * sizeof *times);
  if (times == NULL || prepare_inputs() != 0)
    return 1;
#ifdef EG_PROFILE
  uint64_t *calls = malloc((size_t)steps * eg_prof_calls * sizeof *calls);
  if (calls == NULL)
    return 1;
#endif

  eg_init();
  for (i = 0; i < warmup; i++) {
    load_inputs();
    eg_train_step(&loss);
    if (i == 0)
      loss_first = loss;
  }
  for (i = 0; i < steps; i++) {
    uint64_t t0;
    load_inputs();
    t0 = now_ns();
    eg_train_step(&loss);
    times[i] = now_ns() - t0;
    total += times[i];
    if (i == 0 && warmup == 0)
      loss_first = loss;
#ifdef EG_PROFILE
    for (uint32_t c = 0; c < eg_prof_calls; c++)
      calls[(size_t)c * steps + i] = eg_prof_ns[c];
#endif
  }
  qsort(times, (size_t)steps, sizeof *times, cmp_u64);
  printf("steps=%ld median_us=%.3f min_us=%.3f mean_us=%.3f loss_first=%.6g loss_last=%.6g peak_rss_kib=%ld\n", steps,
         (steps % 2 ? (double)times[steps / 2] : 0.5 * (double)(times[steps / 2 - 1] + times[steps / 2])) / 1e3,
         (double)times[0] / 1e3, (double)total / (double)steps / 1e3, (double)loss_first, (double)loss, peak_rss_kib());
  free(times);
#ifdef EG_PROFILE
  for (uint32_t c = 0; c < eg_prof_calls; c++) {
    uint64_t *t = calls + (size_t)c * steps;
    qsort(t, (size_t)steps, sizeof *t, cmp_u64);
    printf("call=%u median_ns=%.1f\n", c, steps % 2 ? (double)t[steps / 2] : 0.5 * (double)(t[steps / 2 - 1] + t[steps / 2]));
  }
  free(calls);
#endif
  if (argc > 3 && dump_params(argv[3]) != 0)
    return 1;
  return isfinite(loss) ? 0 : 2;
}
