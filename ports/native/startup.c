/* Start-up for the twins: vector table, reset (copy .data, zero .bss, paint the stack, enable the FPU),
 * a hard-fault handler that names the faulting PC, and the painted-stack high-water mark. */
#include <stdint.h>

#include "semihost.h"
#include "startup.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _stack_limit, _estack;
int main(void);

#define STACK_PAINT 0xC5C5C5C5u
#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define CFSR (*(volatile uint32_t *)0xE000ED28u)

void Reset_Handler(void);
void Fault_Handler(void);
void Default_Handler(void);

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler,
    Default_Handler,  /* NMI */
    Fault_Handler,    /* HardFault */
    Fault_Handler,    /* MemManage */
    Fault_Handler,    /* BusFault */
    Fault_Handler,    /* UsageFault */
    0, 0, 0, 0,
    Default_Handler,  /* SVCall */
    Default_Handler,  /* DebugMonitor */
    0,
    Default_Handler,  /* PendSV */
    Default_Handler,  /* SysTick */
};

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++)
        *dst = 0;
#if defined(__ARM_FP)
    CPACR |= 0xFu << 20;   /* CP10, CP11: full access to the FPU */
    __asm__ volatile("dsb\n\tisb");
#endif
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_stack_limit; dst < (uint32_t *)(sp - 64); dst++)
        *dst = STACK_PAINT;
    sh_exit(main());
}

uint32_t et_stack_used_bytes(void)
{
    const uint32_t *p = &_stack_limit;
    while (p < &_estack && *p == STACK_PAINT)
        p++;
    return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)p);
}

uint32_t et_stack_size_bytes(void)
{
    return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)&_stack_limit);
}

/* Called with the exception frame (r0, r1, r2, r3, r12, lr, pc, xpsr) the core stacked on MSP. */
__attribute__((used, noreturn)) void et_fault(const uint32_t *frame)
{
    sh_puts("\nedgesim-fault pc=");
    sh_put_hex(frame[6]);
    sh_puts(" lr=");
    sh_put_hex(frame[5]);
#if __ARM_ARCH >= 7
    sh_puts(" cfsr=");
    sh_put_hex(CFSR);
#endif
    sh_puts("\n");
    sh_exit(ET_EXIT_FAULT);
}

__attribute__((naked)) void Fault_Handler(void)
{
    __asm__ volatile("mrs r0, msp\n\t"
                     "ldr r1, =et_fault\n\t"
                     "bx r1\n\t"
                     ".ltorg");
}

void Default_Handler(void)
{
    sh_puts("\nedgesim-fault unexpected interrupt\n");
    sh_exit(ET_EXIT_FAULT);
}
