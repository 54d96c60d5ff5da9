# edgesim twin: Armv6-M (Cortex-M0+) code on the Cortex-M3 of -M mps2-an385. Armv6-M is a subset of
# Armv7-M, so the M3 runs it unchanged: the rpi-pico profile's ISA at the M3 machine's memory map.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m0plus -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M0+ code on Cortex-M3"'

LDSCRIPT = mcu/arm/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb1.o

MPY_CROSS_FLAGS += -march=armv6m
