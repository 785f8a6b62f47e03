# SPDX-License-Identifier: GPL-2.0-or-later
#
# NVMe passthrough hotplug for QEMU: build and test the fork.
#
#   make check   install what is missing, fetch and verify upstream QEMU,
#                apply the patch queue, build, and run every test (the
#                project's qtests also under ASan + UBSan)
#   make build   the same, without the tests (QEMU, virt-nvme-hotplug,
#                nvme-passthru-host and virt-vmx-import)
#   make build-san  QEMU and the qtests with ASan + UBSan (qemu-build-san)
#   make soak    1000 add/remove cycles, 200 in a real guest, 100 surprise
#                removals: QEMU's RSS and fds at start and end
#   make demo    hotplug of an NVMe in a real UEFI guest, step by step
#   make bench   hotplug latencies and memory against upstream, and host-side
#                removal with kernel VFIO (build/bench/)
#   make fuzz    build the libFuzzer targets, run each to FUZZ_RUNS (10^6)
#
# Options (./configure writes them to config.mak; make VAR=... and the
# environment work too): DEB_CACHE=DIR for an offline package cache,
# BUILD_DIR=DIR for the build folder.

-include config.mak

BUILD_DIR ?= build
DEB_CACHE ?=
export BUILD_DIR DEB_CACHE

.PHONY: all deps upstream build build-san check check-build check-qtest clean distclean help

all: build

help:
	@sed -n '3,20p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@scripts/install-deps.sh

upstream: deps
	@scripts/upstream.sh all

build: upstream
	@scripts/build-qemu.sh
	@$(MAKE) --no-print-directory tools

# nvme-passthru-host: the host side (list, enable/disable, check, watch).
# Its module, HOST_MOD_SRC with the header nvme-host.h, is for other tools
# too: add $(HOST_MOD_SRC) and -I$(HOST_DIR) to their link (json-c).
HOST_TOOL = $(BUILD_DIR)/tools/nvme-passthru-host
HOST_DIR = contrib/nvme-passthru-host
HOST_MOD_SRC = $(addprefix $(HOST_DIR)/,sysfs.c pci.c inuse.c bind.c iommu.c)
HOST_SRC = $(HOST_DIR)/nvme-passthru-host.c $(HOST_DIR)/watch.c $(HOST_MOD_SRC)
# The same with ASan + UBSan, for tests/host under the sanitizers
HOST_TOOL_SAN = $(BUILD_DIR)/tools-san/nvme-passthru-host
# virt-nvme-hotplug: passthrough hotplug of a libvirt domain; its host
# checks are the host module's
TOOL = $(BUILD_DIR)/tools/virt-nvme-hotplug
TOOL_SRC = $(wildcard contrib/virt-nvme-hotplug/*.c) $(HOST_MOD_SRC)
TOOL_HDR = $(wildcard contrib/virt-nvme-hotplug/*.h) $(HOST_DIR)/nvme-host.h
TOOL_LIBS = libvirt libvirt-qemu json-c libxml-2.0
# virt-vmx-import: a VMware .vmx as this project's libvirt domain; its
# host checks are the host module's; the ASan + UBSan build for
# tests/vmx-import under the sanitizers
VMX_TOOL = $(BUILD_DIR)/tools/virt-vmx-import
VMX_TOOL_SAN = $(BUILD_DIR)/tools-san/virt-vmx-import
VMX_SRC = $(wildcard contrib/vmx-import/*.c) $(HOST_MOD_SRC)
VMX_HDR = $(wildcard contrib/vmx-import/*.h) $(HOST_DIR)/nvme-host.h
VMX_LIBS = json-c libxml-2.0
.PHONY: tools
tools: $(TOOL) $(HOST_TOOL) $(HOST_TOOL_SAN) $(VMX_TOOL) $(VMX_TOOL_SAN)
$(TOOL): $(TOOL_SRC) $(TOOL_HDR)
	@mkdir -p $(@D)
	$(CC) -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation \
	    -I$(HOST_DIR) -o $@ $(TOOL_SRC) \
	    $$(pkg-config --cflags --libs $(TOOL_LIBS))

$(HOST_TOOL): $(HOST_SRC) $(wildcard $(HOST_DIR)/*.h)
	@mkdir -p $(@D)
	$(CC) -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation \
	    -o $@ $(HOST_SRC) $$(pkg-config --cflags --libs json-c)

$(HOST_TOOL_SAN): $(HOST_SRC) $(wildcard $(HOST_DIR)/*.h)
	@mkdir -p $(@D)
	$(CC) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter \
	    -Wno-format-truncation \
	    -o $@ $(HOST_SRC) $$(pkg-config --cflags --libs json-c)

$(VMX_TOOL): $(VMX_SRC) $(VMX_HDR)
	@mkdir -p $(@D)
	$(CC) -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation \
	    -I$(HOST_DIR) -o $@ $(VMX_SRC) $$(pkg-config --cflags --libs $(VMX_LIBS))

$(VMX_TOOL_SAN): $(VMX_SRC) $(VMX_HDR)
	@mkdir -p $(@D)
	$(CC) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter \
	    -Wno-format-truncation -I$(HOST_DIR) \
	    -o $@ $(VMX_SRC) $$(pkg-config --cflags --libs $(VMX_LIBS))

# The sanitized build (after the normal one: one build at a time)
build-san: build
	@scripts/build-qemu.sh --san

check: build build-san fuzz-build
	@scripts/run-tests.sh

# Soak at full size (SOAK_ARGS="--san" adds the qtest soak under the
# sanitizers, "--quick" runs the CI sizes)
.PHONY: soak
soak: build build-san
	@scripts/guest/build-guest.sh
	@scripts/soak.sh $(SOAK_ARGS)

# libFuzzer: qemu-fuzz-x86_64 with clang 14, ASan and UBSan, in its own
# build folder (build/qemu-build-fuzz); make check replays the seed
# corpora and runs each target briefly, make fuzz runs each target to
# FUZZ_RUNS executions (default 10^6; hours on 2 cores).
FUZZ_RUNS ?= 1000000
export FUZZ_RUNS
.PHONY: fuzz fuzz-build
fuzz-build: upstream
	@scripts/build-fuzz.sh

fuzz: fuzz-build
	@scripts/fuzz.sh

# hot-add, orderly and surprise removal of an NVMe in a real UEFI guest
.PHONY: demo
demo: build
	@scripts/guest/build-guest.sh
	@python3 scripts/guest/demo.py $(DEMO_ARGS)

# hotplug latencies and memory: this project vs upstream vfio-user-pci vs
# an emulated nvme, taking turns in one VM per mode, ACPI and native
# (BENCH_ARGS="--quick", "--runs 15", "--repeat 3", ...); then hot-add and
# host-side removal with kernel VFIO, vfio-nvme vs upstream vfio-pci, in the
# nested bed (NESTED_BENCH_ARGS="--wait 30", "--runs 15")
.PHONY: bench
bench: build
	@scripts/guest/build-guest.sh
	@python3 scripts/guest/bench.py $(BENCH_ARGS)
	@python3 scripts/nested/bench-nested.py $(NESTED_BENCH_ARGS)

clean:
	rm -rf $(BUILD_DIR)/qemu-build $(BUILD_DIR)/qemu-build-san \
	    $(BUILD_DIR)/qemu-build-fuzz

distclean:
	rm -rf $(BUILD_DIR) config.mak
