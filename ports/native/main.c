/* The twin's training run: samples in over semihosting, the generated step (model.c) run on them, per-op
 * guest-timer readings, losses and the stack high-water mark out. Nothing here depends on the model. */
#include <stdint.h>

#include "model.h"
#include "semihost.h"
#include "startup.h"
#include "twin.h"

#define SAMPLES_MAGIC 0x31534D45u   /* "EMS1" little-endian: samples.bin */
#define RESULTS_MAGIC 0x31525345u   /* "ESR1": results.bin */

static float x_staging[MODEL_BATCH * MODEL_INPUTS];   /* the sensor buffer the input op copies from */
static int32_t y_staging[MODEL_BATCH];
uint32_t et_marks[MODEL_OPS + 1];                      /* timer readings before op 0 and after each op */

static int put(int fd, const void *p, int len)
{
    return sh_write(fd, p, len) == 0;
}

int main(void)
{
    uint32_t hdr[4];
    int in = sh_open("samples.bin", SH_MODE_RB);
    if (in < 0 || sh_read(in, hdr, sizeof hdr) != 0)
        return ET_EXIT_IO;
    if (hdr[0] != SAMPLES_MAGIC || hdr[2] != MODEL_BATCH || hdr[3] != MODEL_INPUTS)
        return ET_EXIT_SAMPLES;
    int out = sh_open("results.bin", SH_MODE_WB);
    if (out < 0)
        return ET_EXIT_IO;
    const uint32_t rhdr[4] = {RESULTS_MAGIC, hdr[1], MODEL_OPS, 0};
    if (!put(out, rhdr, sizeof rhdr))
        return ET_EXIT_IO;
    model_init();
    for (uint32_t step = 0; step < hdr[1]; step++) {
        if (sh_read(in, x_staging, sizeof x_staging) != 0 || sh_read(in, y_staging, sizeof y_staging) != 0)
            return ET_EXIT_IO;
        et_timer_start();
        union { float f; uint32_t u; } loss;
        loss.f = model_step(x_staging, y_staging);
        if (!put(out, &loss.u, 4) || !put(out, et_marks, sizeof et_marks))
            return ET_EXIT_IO;
    }
    const uint32_t trailer[2] = {et_stack_used_bytes(), et_stack_size_bytes()};
    if (!put(out, trailer, sizeof trailer))
        return ET_EXIT_IO;
    sh_close(out);
    sh_close(in);
    return ET_EXIT_OK;
}
