#!/bin/sh
# Runs inside the test VM (busybox sh):
#   run-kselftests.sh SECS [--retry BIN,BIN...] TEST...
# Runs each kselftest binary from /bin with a hard time limit of SECS.  The
# binary writes straight to the console, a tty, so its stdio is line
# buffered: through a pipe or a file, the buffers its fork()ed children
# inherit would be flushed twice.  Each binary's own TAP is framed by a
# '# selftest: NAME' line and a '# rundkit-result: ...' line, which
# scripts/vm-selftests turns into flat TAP.
limit=$1
shift
retry_bins=""
if [ "${1:-}" = --retry ]; then
	retry_bins=",$2,"
	shift 2
fi
# The environment the selftests expect of a real host, set up once:
#  - a disk filesystem as / and as the working directory: the page-cache
#    tests need one (tmpfs reads holes as the zero page and charges
#    nothing), and test_kmem_basic's negative dentries are dropped at once
#    by the initramfs (ramfs keeps no negative dentry).  The RAM disk
#    becomes the root by chroot, with /proc, /sys (cgroupfs included) and
#    /dev as in the VM;
#  - cgroup2 mounted with nsdelegate, as systemd mounts it:
#    test_cgcore_lesser_ns_open checks the namespace boundary that only
#    nsdelegate draws.  It is mounted so again before each binary, because
#    a test may remount cgroup2 with other options (test_lwcg does).
if [ -z "${RUNDKIT_IN_SCRATCH_ROOT:-}" ] && [ -b /dev/ram0 ] && mke2fs -q /dev/ram0 &&
	mkdir -p /mnt/scratch && mount -t ext2 /dev/ram0 /mnt/scratch; then
	r=/mnt/scratch
	mkdir -p $r/bin $r/proc $r/sys $r/dev $r/tmp
	cp -a /bin/. $r/bin/
	mount -t proc proc $r/proc
	mount --rbind /sys $r/sys
	mount --rbind /dev $r/dev
	mount -t tmpfs tmpfs $r/tmp
	echo "# scratch root filesystem: ext2 on /dev/ram0"
	RUNDKIT_IN_SCRATCH_ROOT=1 exec chroot $r /bin/sh /bin/run-kselftests.sh "$limit" \
		--retry "${retry_bins#,}" "$@"
fi
cd /
cgroup_defaults() {
	mount -o remount,nsdelegate /sys/fs/cgroup ||
		echo "# could not remount cgroup2 with nsdelegate"
}
# A failing binary that has a known flake (--retry, from
# selftests/known-flakes) is run twice more, so that the flake shows as
# flaky, with its counts: the retries never turn a failure into a pass
# (vm-selftests passes a case only if every run passed it, or if it is a
# known flake).  Any other binary runs once: a new flake is a failure until
# someone finds its cause and lists it.
retries=2
n=0
for t in "$@"; do
	n=$((n + 1))
	attempt=0
	while :; do
		attempt=$((attempt + 1))
		cgroup_defaults
		echo "# selftest: $t attempt $attempt"
		start=$(date +%s)
		timeout -s KILL "$limit" "/bin/$t"
		rc=$?
		secs=$(($(date +%s) - start))
		case $rc in
		0) echo "# rundkit-result: ok $n $t # ${secs}s" ;;
		4) echo "# rundkit-result: ok $n $t # SKIP" ;;
		137) echo "# rundkit-result: not ok $n $t # TIMEOUT after ${limit}s" ;;
		*) echo "# rundkit-result: not ok $n $t # exit=$rc after ${secs}s" ;;
		esac
		case $rc in 0 | 4) break ;; esac
		case "$retry_bins" in *",$t,"*) ;; *) break ;; esac
		[ "$attempt" -le "$retries" ] || break
	done
done
