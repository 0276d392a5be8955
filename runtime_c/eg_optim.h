/* eg_optim.h — in-place optimizer steps on a 2-D block of a weight, fp32.
 *
 * A block is `rows` rows of `inner` contiguous elements, rows `w_stride` elements apart in w
 * (the whole tensor: rows = 1, inner = numel; a sparse update of leading output channels:
 * rows = M_upd, inner = Cg_upd*KH*KW, w_stride = Cg*KH*KW). g and the optimizer state are
 * compact [rows * inner]. Matches torch.optim (no weight decay, no dampening, no nesterov).
 */
#ifndef EG_OPTIM_H
#define EG_OPTIM_H

/* w -= lr * g */
void sgd_f32(float *restrict w, const float *restrict g, int rows, int inner, int w_stride,
             float lr);
/* v = mu * v + g; w -= lr * v */
void momentum_f32(float *restrict w, float *restrict v, const float *restrict g, int rows,
                  int inner, int w_stride, float lr, float mu);
/* m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; w -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
 * with bc1 = 1 - b1^t, bc2 = 1 - b2^t supplied by the caller (t = step count from 1). */
void adam_f32(float *restrict w, float *restrict m, float *restrict v, const float *restrict g,
              int rows, int inner, int w_stride, float lr, float beta1, float beta2, float eps,
              float bc1, float bc2);

#endif /* EG_OPTIM_H */
