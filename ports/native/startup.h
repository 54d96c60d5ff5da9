/* What the start-up code offers the program: exit codes and the painted stack's high-water mark. */
#ifndef STARTUP_H
#define STARTUP_H

#include <stdint.h>

#define ET_EXIT_OK 0
#define ET_EXIT_IO 10       /* a host file could not be opened, read or written */
#define ET_EXIT_SAMPLES 11  /* samples.bin does not match the compiled model */
#define ET_EXIT_FAULT 12    /* a hard fault (the console names the PC) */

uint32_t et_stack_used_bytes(void);  /* deepest the stack has been since reset */
uint32_t et_stack_size_bytes(void);  /* the room the linker left for it */

#endif
