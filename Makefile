# rundkit: what can be built and run.  `make help` lists it.
#
# Everything builds under build/.  Kernel work uses Debian's linux-source
# packages; KSRC=dir patches and builds a kernel tree you already have.

SHELL := /bin/bash
JOBS ?= $(shell nproc)
# KVER=6.12 builds and tests Debian's 6.12 series instead (default: 6.1).
export JOBS KSRC KVER

CXX_BUILD := build/cxx

.PHONY: help deps host-kernel host-kernel-stock host-kernel-debug selftests \
	selftests-stock selftests-debug guest-kernel distro-guest-kernel guest-test cxx cxx-test check demo \
	demo-kernel-pool runtimes-test \
	check-series clean

help:
	@echo "make deps               install the Debian packages rundkit needs (root)"
	@echo "make demo               the main job: 10 microVM sandboxes at once with rundctl"
	@echo "make demo-kernel-pool   patched kernel in a VM, lwcg pools at work"
	@echo "make check              every test: C++ unit/integration tests, kselftests in VMs"
	@echo "make host-kernel        patched Debian 6.1 host kernel (test + debug variants);"
	@echo "                        KVER=6.12 with host-kernel*, selftests* and check-series: Debian 6.12"
	@echo "make host-kernel-stock  the same kernel without the series, for comparison"
	@echo "make selftests          cgroup kselftests + test_lwcg on the patched kernel"
	@echo "make runtimes-test      Debian's containerd, runc, crun on the patched kernel, pool on/off"
	@echo "make guest-kernel       condensed sandbox guest kernel (vmlinux, bzImage)"
	@echo "make distro-guest-kernel Debian's cloud kernel + the agent's modules (bench baseline)"
	@echo "make guest-test         boot it on q35 and microvm, check every feature"
	@echo "make check-series       checkpatch --strict and a build of every patch in turn"
	@echo "make bench-guest        condensed guest kernel vs Debian cloud vs defconfig (table, chart)"
	@echo "make cxx / cxx-test     build / test the C++ tools (lcgroupctl, reflinkfs)"
	@echo "make clean              remove build/"

deps:
	scripts/install-deps

host-kernel:
	scripts/build-host-kernel lwcg
	scripts/build-host-kernel debug

host-kernel-stock:
	scripts/build-host-kernel stock

host-kernel-debug:
	scripts/build-host-kernel debug

selftests:
	scripts/vm-selftests lwcg

selftests-stock:
	scripts/vm-selftests stock

selftests-debug:
	scripts/vm-selftests debug

runtimes-test:
	scripts/vm-runtimes

guest-kernel:
	scripts/build-guest-kernel

distro-guest-kernel:
	scripts/build-distro-guest-kernel

guest-test: guest-kernel
	scripts/vm-guest-kernel

cxx:
	cmake -S . -B $(CXX_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(CXX_BUILD) -j$(JOBS)

cxx-test: cxx
	scripts/run-ctest $(CXX_BUILD)

check:
	scripts/check

demo:
	scripts/demo

demo-kernel-pool:
	scripts/demo-kernel-pool

.PHONY: bench-guest
bench-guest:
	scripts/bench-guest

check-series:
	scripts/check-series

clean:
	rm -rf build
