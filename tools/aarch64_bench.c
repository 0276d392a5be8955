/* aarch64_bench.c — times the reference, tiled and NEON conv kernels on shapes read from stdin
 * (tools/aarch64bench.py builds this statically and runs it under qemu-aarch64).
 *
 * stdin, one layer per line: N C H W M OH OW KH KW sh sw pt pl dil_h dil_w G scratch_floats dw
 * (dw = 1: a depthwise layer the _dw_neon kernels take: "NEON" is them, not _neon)
 * stdout, one line per layer and kind (fw, bw_input, bw_weight): the minimum wall time per
 * call in microseconds of the reference, _tiled and NEON kernels.
 * `aarch64_bench count VARIANT KIND REPS` (0 ref / 1 tiled / 2 NEON; 0 fw / 1 bw_input /
 * 2 bw_weight) instead calls that one kernel REPS times on the first layer, untimed: the
 * bench counts the guest instructions of runs with REPS = 0 and 1 from QEMU's exec trace. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eg_conv.h"
#include "eg_conv_tiled.h"
#include "eg_dw_neon.h"
#include "eg_neon.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static float *randn(size_t n, unsigned *seed)
{
    float *p = malloc(4 * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return p;
}

enum { REF, TILED, NEON, DW_NEON };

static void call(int kind, int v, float *y, float *dx, float *dwt, const float *x, const float *w,
                 const float *b, const float *dy, const int *d, float *s)
{
    const int N = d[0], C = d[1], H = d[2], W = d[3], M = d[4], OH = d[5], OW = d[6], KH = d[7], KW = d[8];
    const int sh = d[9], sw = d[10], pt = d[11], pl = d[12], dh = d[13], dw = d[14], G = d[15];
    const int Cg = C / G;
    if (v == NEON && d[17]) v = DW_NEON;
    if (kind == 0 && v == DW_NEON) conv2d_f32_fw_dw_neon(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, s);
    if (kind == 1 && v == DW_NEON) conv2d_f32_bw_input_dw_neon(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, s);
    if (kind == 2 && v == DW_NEON) conv2d_f32_bw_weight_dw_neon(dwt, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, M, Cg, C, s);
    if (kind == 0 && v == REF) conv2d_f32_fw(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G);
    if (kind == 0 && v == TILED) conv2d_f32_fw_tiled(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, s);
    if (kind == 0 && v == NEON) conv2d_f32_fw_neon(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, s);
    if (kind == 1 && v == REF) conv2d_f32_bw_input(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G);
    if (kind == 1 && v == TILED) conv2d_f32_bw_input_tiled(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, s);
    if (kind == 1 && v == NEON) conv2d_f32_bw_input_neon(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, s);
    if (kind == 2 && v == REF) conv2d_f32_bw_weight(dwt, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, M, Cg, C);
    if (kind == 2 && v == TILED) conv2d_f32_bw_weight_tiled(dwt, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, M, Cg, C, s);
    if (kind == 2 && v == NEON) conv2d_f32_bw_weight_neon(dwt, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, M, Cg, C, s);
}

int main(int argc, char **argv)
{
    const int count = argc > 4 && argv[1][0] == 'c';
    const double budget_us = argc > 1 && !count ? atof(argv[1]) : 200000.0; /* per kernel and variant */
    int d[18];
    unsigned seed = 1;
    while (1) {
        for (int i = 0; i < 18; i++)
            if (scanf("%d", &d[i]) != 1)
                return 0;
        const int N = d[0], C = d[1], H = d[2], W = d[3], M = d[4], OH = d[5], OW = d[6], KH = d[7], KW = d[8];
        const int Cg = C / d[15];
        float *x = randn((size_t)N * C * H * W, &seed), *w = randn((size_t)M * Cg * KH * KW, &seed);
        float *b = randn(M, &seed), *dy = randn((size_t)N * M * OH * OW, &seed);
        float *y = randn((size_t)N * M * OH * OW, &seed), *dx = randn((size_t)N * C * H * W, &seed);
        float *dwt = randn((size_t)M * Cg * KH * KW, &seed), *s = randn(d[16], &seed);
        if (count) {
            for (int r = 0; r < atoi(argv[4]); r++)
                call(atoi(argv[3]), atoi(argv[2]), y, dx, dwt, x, w, b, dy, d, s);
            return 0;
        }
        for (int kind = 0; kind < 3; kind++) {
            double best[3];
            for (int v = 0; v < 3; v++) {
                best[v] = 1e30;
                double spent = 0;
                for (int rep = 0; rep < 1000 && (rep < 3 || spent < budget_us); rep++) {
                    const double t0 = now_us();
                    call(kind, v, y, dx, dwt, x, w, b, dy, d, s);
                    const double t = now_us() - t0;
                    spent += t;
                    if (t < best[v])
                        best[v] = t;
                }
            }
            printf("%d %.1f %.1f %.1f\n", kind, best[0], best[1], best[2]);
            fflush(stdout);
        }
        free(x); free(w); free(b); free(dy); free(y); free(dx); free(dwt); free(s);
    }
}
