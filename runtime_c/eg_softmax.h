/* eg_softmax.h — softmax along one axis, and the two training losses, fp32. */
#ifndef EG_SOFTMAX_H
#define EG_SOFTMAX_H

/* Softmax along an axis of length n: element (o, i, j) at o*n*inner + i*inner + j. */
void softmax_f32_fw(float *restrict y, const float *restrict x, int outer, int n, int inner);
/* dx = y * (dy - sum_i(dy * y)) along the same axis. */
void softmax_f32_bw(float *restrict dx, const float *restrict dy, const float *restrict y,
                    int outer, int n, int inner);

/* loss[0] = -log softmax(logits[n])[label]; dlogits[n] (may be NULL) = softmax - onehot(label). */
void softmax_xent_f32(float *restrict loss, float *restrict dlogits, const float *restrict logits,
                      int label, int n);

/* loss[0] = mean((y - target)^2) over n; dy[n] (may be NULL) = 2 (y - target) / n. */
void mse_f32(float *restrict loss, float *restrict dy, const float *restrict y,
             const float *restrict target, int n);

#endif /* EG_SOFTMAX_H */
