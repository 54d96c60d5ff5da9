# edgesim twin: Netduino Plus 2 (STM32F405, Cortex-M4F, FPv4-SP) under -M netduinoplus2: 1 MB flash at
# 0x08000000 (aliased at 0 for the reset vector), 192 KB SRAM at 0x20000000, console on USART1 at
# 0x40011000 (MicroPython's STM32 UART driver). Hard float with the FPU on at reset.
QEMU_ARCH = arm
QEMU_MACHINE = netduinoplus2

CFLAGS += -mthumb -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard
CFLAGS += -DQEMU_SOC_STM32
CFLAGS += -DMICROPY_HW_MCU_NAME='"STM32F405"'
LDFLAGS += -Wl,--wrap=uart_init

LDSCRIPT = boards/NETDUINOPLUS2/netduinoplus2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o boards/edgesim_common/fpu_init.o

MPY_CROSS_FLAGS += -march=armv7emsp
