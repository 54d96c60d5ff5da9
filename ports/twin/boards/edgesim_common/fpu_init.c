// edgesim twin boards: switch the FPU on before MicroPython runs (docs/architecture.md §4b).
// A Cortex-M4F/M7 resets with its FPU off (CPACR.CP10/CP11 = 0): the first VFP instruction would be a
// UsageFault. MicroPython's qemu start-up code calls uart_init() once, before main(), from integer-only
// code; the board links with -Wl,--wrap=uart_init so that call comes here first.
#include <stdint.h>

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)   // Coprocessor Access Control Register

void __real_uart_init(void);

void __wrap_uart_init(void) {
    SCB_CPACR |= 0xFu << 20;             // CP10 and CP11: full access
    __asm volatile ("dsb\n\tisb" ::: "memory");
    __real_uart_init();
}
