/* model.h for the bootloader: the bootloader links runtime_c/eg_proto.c (framing, CRC,
 * retransmission cache) as a "model" with no buffers; its real work is in eg_board_request()
 * (boot.c). Same declarations as the generated model.h (compiler/templates/model.h.j2). */
#ifndef EG_MODEL_H
#define EG_MODEL_H
#include <stdint.h>

#define EG_BUF_INPUT 0
#define EG_BUF_OUTPUT 1
#define EG_BUF_FROZEN 2
#define EG_BUF_PARAM 3
#define EG_BUF_STATE 4
#define EG_BUF_TARGET 5

/* Element type of a buffer (what a checkpoint may scan for NaN/Inf, what a host reads). */
#define EG_DT_F32 0
#define EG_DT_F16 1
#define EG_DT_S8  2
#define EG_DT_I32 3
#define EG_DT_U8  4
#define EG_DT_I64 5

typedef struct { const char *name; void *data; uint32_t bytes; uint8_t kind; uint8_t dtype; } eg_buffer_t;

extern const eg_buffer_t eg_buffers[];
extern const uint32_t eg_num_buffers;
extern const uint32_t eg_model_hash;

void eg_init(void);
void eg_infer(void);
void eg_train_step(float *loss);

#endif
