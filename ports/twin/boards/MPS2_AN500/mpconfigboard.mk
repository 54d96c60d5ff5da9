# edgesim twin: MPS2 FPGA image AN500 (Cortex-M7) under -M mps2-an500. QEMU models FPv5 with double
# precision; we build for FPv5-SP like the STM32F746 it twins (a subset). Same memory map at 0x0 and CMSDK
# UART as MPS2_AN385; hard float with the FPU on at reset.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an500

CFLAGS += -mthumb -mcpu=cortex-m7 -mfpu=fpv5-sp-d16 -mfloat-abi=hard
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M7"'
LDFLAGS += -Wl,--wrap=uart_init

LDSCRIPT = mcu/arm/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o boards/edgesim_common/fpu_init.o

MPY_CROSS_FLAGS += -march=armv7emsp
