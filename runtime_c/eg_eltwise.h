/* eg_eltwise.h — elementwise arithmetic and activations (forward + backward), fp32.
 * n is an element count; x/y/dx/dy are contiguous [n] unless stated. */
#ifndef EG_ELTWISE_H
#define EG_ELTWISE_H

/* y[i] = a[i] op b[i], same shape, contiguous. */
void add_f32(float *y, const float *a, const float *b, int n);
void sub_f32(float *y, const float *a, const float *b, int n);
void mul_f32(float *y, const float *a, const float *b, int n);
void div_f32(float *y, const float *a, const float *b, int n);

/* y contiguous with shape[ndim] (the output shape); a at sum(idx[d]*sa[d]), b likewise
 * (stride 0 = broadcast dim). */
void add_f32_bcast(float *y, const float *a, const float *b, int ndim,
                   const int *shape, const int *sa, const int *sb);
void sub_f32_bcast(float *y, const float *a, const float *b, int ndim,
                   const int *shape, const int *sa, const int *sb);
void mul_f32_bcast(float *y, const float *a, const float *b, int ndim,
                   const int *shape, const int *sa, const int *sb);
void div_f32_bcast(float *y, const float *a, const float *b, int ndim,
                   const int *shape, const int *sa, const int *sb);

void scale_f32(float *y, const float *x, int n, float alpha); /* y = alpha*x */
void fill_f32(float *y, int n, float value);
void copy_f32(float *y, const float *x, int n);
void accumulate_f32(float *y, const float *x, int n); /* y += x */

/* Activations: y = f(x); backward dx = dy * f'(.) from the saved x or y as named. */
void relu_f32_fw(float *y, const float *x, int n);
void relu_f32_bw(float *dx, const float *dy, const float *y, int n);
void clip_f32_fw(float *y, const float *x, int n, float lo, float hi);
void clip_f32_bw(float *dx, const float *dy, const float *y, int n,
                 float lo, float hi);
void leakyrelu_f32_fw(float *y, const float *x, int n, float alpha);
void leakyrelu_f32_bw(float *dx, const float *dy, const float *x, int n,
                      float alpha);
void sigmoid_f32_fw(float *y, const float *x, int n);
void sigmoid_f32_bw(float *dx, const float *dy, const float *y, int n);
void tanh_f32_fw(float *y, const float *x, int n);
void tanh_f32_bw(float *dx, const float *dy, const float *y, int n);
void hardsigmoid_f32_fw(float *y, const float *x, int n, float alpha,
                        float beta);
void hardsigmoid_f32_bw(float *dx, const float *dy, const float *x,
                        int n, float alpha, float beta);
void hardswish_f32_fw(float *y, const float *x, int n);
void hardswish_f32_bw(float *dx, const float *dy, const float *x,
                      int n);

/* PReLU: x, y, dx, dy contiguous with shape[ndim]; slope element at sum(idx[d]*ss[d]). */
void prelu_f32_fw(float *y, const float *x, const float *slope,
                  int ndim, const int *shape, const int *ss);
void prelu_f32_bw_input(float *dx, const float *dy, const float *x,
                        const float *slope, int ndim, const int *shape, const int *ss);
/* t[i] = x[i] < 0 ? dy[i]*x[i] : 0; the compiler reduces t onto the slope's shape. */
void prelu_f32_bw_slope_terms(float *t, const float *dy,
                              const float *x, int n);

#endif /* EG_ELTWISE_H */
