# edgesim twin: MPS2 FPGA image AN386 (Cortex-M4F, FPv4-SP) under qemu-system-arm -M mps2-an386.
# Same memory map and CMSDK UART as MicroPython's MPS2_AN385; hard float with the FPU on at reset.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an386

CFLAGS += -mthumb -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M4F"'
LDFLAGS += -Wl,--wrap=uart_init

LDSCRIPT = mcu/arm/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o boards/edgesim_common/fpu_init.o

MPY_CROSS_FLAGS += -march=armv7emsp
