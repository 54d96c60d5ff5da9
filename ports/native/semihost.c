/* ARM semihosting calls (Arm "Semihosting for AArch32 and AArch64", operations 0x01-0x20). */
#include "semihost.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int sh_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static int length(const char *s)
{
    int n = 0;
    while (s[n])
        n++;
    return n;
}

int sh_open(const char *path, int mode)
{
    const uint32_t args[3] = {(uint32_t)path, (uint32_t)mode, (uint32_t)length(path)};
    return sh_call(SYS_OPEN, args);
}

int sh_close(int fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return sh_call(SYS_CLOSE, args);
}

int sh_read(int fd, void *buf, int len)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, (uint32_t)len};
    return sh_call(SYS_READ, args);
}

int sh_write(int fd, const void *buf, int len)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, (uint32_t)len};
    return sh_call(SYS_WRITE, args);
}

void sh_puts(const char *s)
{
    sh_call(SYS_WRITE0, s);
}

void sh_put_hex(uint32_t v)
{
    char buf[11] = "0x";
    for (int i = 0; i < 8; i++) {
        unsigned d = (v >> (28 - 4 * i)) & 0xF;
        buf[2 + i] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    }
    buf[10] = 0;
    sh_puts(buf);
}

void sh_exit(int code)
{
    const uint32_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    for (;;)
        sh_call(SYS_EXIT_EXTENDED, args);
}
