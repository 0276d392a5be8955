/* eg_pool.h — 2-D max and average pooling (NCHW), forward + backward, fp32.
 * Sizes: N batch, C channels, H,W input, OH,OW output, KH,KW window, sh,sw strides,
 * pt,pl (pb,pr) top/left (bottom/right) padding, dil_h,dil_w dilation (max pool only). */
#ifndef EG_POOL_H
#define EG_POOL_H

/* y[N,C,OH,OW] = max over the window; padding never wins (an all-padding window gives -inf). */
void maxpool2d_f32_fw(float *restrict y, const float *restrict x, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                      int dil_w);
/* dx[N,C,H,W]: zeroed, then each dy goes to the first max of its window (row-major scan). */
void maxpool2d_f32_bw(float *restrict dx, const float *restrict dy, const float *restrict x,
                      int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw,
                      int pt, int pl, int dil_h, int dil_w);

/* y = window sum / divisor; divisor counts the window cells inside [-pt, H+pb) x [-pl, W+pr)
 * if count_include_pad, else inside [0,H) x [0,W) (PyTorch's and ONNX's rule, ceil_mode too). */
void avgpool2d_f32_fw(float *restrict y, const float *restrict x, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int pb,
                      int pr, int count_include_pad);
void avgpool2d_f32_bw(float *restrict dx, const float *restrict dy, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int pb,
                      int pr, int count_include_pad);

#endif /* EG_POOL_H */
