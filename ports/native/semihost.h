/* ARM semihosting (bkpt 0xab): host files and the exit code, the twin's only I/O (docs/architecture.md §4b). */
#ifndef SEMIHOST_H
#define SEMIHOST_H

#include <stdint.h>

#define SH_MODE_RB 1   /* fopen "rb" */
#define SH_MODE_WB 5   /* fopen "wb" */

int sh_open(const char *path, int mode);          /* a host file handle, or -1 */
int sh_close(int fd);
int sh_read(int fd, void *buf, int len);          /* bytes NOT read (0: all of them) */
int sh_write(int fd, const void *buf, int len);   /* bytes NOT written (0: all of them) */
void sh_puts(const char *s);                      /* to QEMU's console */
void sh_put_hex(uint32_t v);                      /* 0x%08x to QEMU's console */
__attribute__((noreturn)) void sh_exit(int code); /* QEMU exits with this status */

#endif
