// SPDX-License-Identifier: GPL-2.0
/*
 * feature-init: PID 1 of the guest kernel's functional test.
 *
 * scripts/vm-guest-kernel boots the condensed guest kernel (guest-config/)
 * with this program as the initramfs's /init and the devices a Kata-style
 * sandbox has.  It exercises one feature after another, the way an agent
 * and a container runtime would use it, and prints one line per feature:
 *
 *	ok FEATURE: what was seen
 *	not ok FEATURE: what failed, with errno
 *	skip FEATURE: why it could not be tried
 *
 * then "done: N failed" and reboots (QEMU runs with -no-reboot, so the VM
 * ends).  Lines go to the kernel console and, when the virtio console is
 * there, to /dev/hvc0 as well: that second copy is how the host checks
 * virtio-console.  If anything failed, the kernel log follows on the
 * kernel console.
 *
 * What to expect comes from the kernel command line, which hands unknown
 * NAME=VALUE words to init as environment variables:
 *
 *	RUNDKIT_CPUS=N        CPUs online at boot
 *	RUNDKIT_MAC=MAC       address of the virtio-net interface
 *	RUNDKIT_VSOCK_CID=N   the guest CID of a vsock device (none: skipped)
 *	RUNDKIT_HOTPLUG=1     wait for a vCPU and a DIMM from the monitor and
 *	                      bring them online (q35)
 *
 * The test disk (/dev/vda, ext4) carries /from-host; the 9p share (tag
 * "share") carries /from-host; both contain HOST_TEXT.  The guest writes
 * /from-guest on the disk, which the host reads back after the VM ends.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#define HOST_TEXT "written by the host\n"
#define GUEST_TEXT "written by the guest\n"
#define VSOCK_PORT 1024
#define SECCOMP_TEST_ERRNO 77

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Where result lines go: the kernel console, and hvc0 when it opened. */
static int out_fds[2] = { -1, -1 };
static int failures;

/* What a feature saw, or why it failed: set by pass(), skip() and fail*(). */
static char detail[512];

static void emit(const char *fmt, ...)
{
	char line[768];
	va_list ap;
	int len, i;

	va_start(ap, fmt);
	len = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	if (len > (int)sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/*
	 * One write per line, so that lines from forked children do not mix.
	 * A line that cannot be written has nowhere else to go.
	 */
	for (i = 0; i < 2; i++)
		if (out_fds[i] >= 0)
			(void)!write(out_fds[i], line, len);
}

/* fail(fmt, ...): record why a feature failed, and return -1. */
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return -1;
}

/* fail_sys(fmt, ...): fail() after a system call, with its errno. */
static int fail_sys(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (len >= 0 && (size_t)len < sizeof(detail))
		snprintf(detail + len, sizeof(detail) - len, ": %s", strerror(saved));
	return -1;
}

/* pass(fmt, ...): record what a feature showed, and return 0. */
static int pass(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return 0;
}

/* skip(fmt, ...): record why a feature was not tried, and return 1. */
static int skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return 1;
}

static void run_feature(const char *name, int (*fn)(void))
{
	int rc;

	detail[0] = '\0';
	rc = fn();
	if (rc == 0) {
		emit("ok %s: %s", name, detail);
	} else if (rc > 0) {
		emit("skip %s: %s", name, detail);
	} else {
		emit("not ok %s: %s", name, detail);
		failures++;
	}
}

static int write_file(const char *path, const char *text)
{
	ssize_t len = strlen(text);
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (write(fd, text, len) != len) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return close(fd);
}

/* read_file: at most size - 1 bytes of PATH into BUF, NUL-terminated. */
static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return -1;
	len = read(fd, buf, size - 1);
	close(fd);
	if (len < 0)
		return -1;
	buf[len] = '\0';
	return 0;
}

/* expect_file: PATH reads exactly TEXT, or the feature fails saying what it read. */
static int expect_file(const char *path, const char *text)
{
	char buf[128];

	if (read_file(path, buf, sizeof(buf)))
		return fail_sys("read %s", path);
	if (strcmp(buf, text)) {
		buf[strcspn(buf, "\n")] = '\0';
		return fail("%s reads \"%s\"", path, buf);
	}
	return 0;
}

static int make_dir(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* has_word: WORD is one of the blank-separated words of LIST. */
static bool has_word(const char *list, const char *word)
{
	size_t len = strlen(word);
	const char *p = list;

	while ((p = strstr(p, word))) {
		bool starts = p == list || p[-1] == ' ' || p[-1] == '\n';
		bool ends = p[len] == '\0' || p[len] == ' ' || p[len] == '\n';

		if (starts && ends)
			return true;
		p += len;
	}
	return false;
}

static double uptime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * run_in_child: run FN in a forked child and return its result, with the
 * child's detail copied back, so that a feature can change its process
 * (namespaces, cgroup membership, seccomp) without changing init.
 */
static int run_in_child(int (*fn)(void *), void *arg)
{
	int pipefd[2], status;
	ssize_t len;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC))
		return fail_sys("pipe2");
	pid = fork();
	if (pid < 0)
		return fail_sys("fork");
	if (pid == 0) {
		int rc;

		close(pipefd[0]);
		detail[0] = '\0';
		rc = fn(arg);
		if (write(pipefd[1], detail, strlen(detail)) < 0)
			_exit(3);
		_exit(rc == 0 ? 0 : rc > 0 ? 1 : 2);
	}
	close(pipefd[1]);
	len = read(pipefd[0], detail, sizeof(detail) - 1);
	detail[len > 0 ? len : 0] = '\0';
	close(pipefd[0]);
	if (waitpid(pid, &status, 0) != pid)
		return fail_sys("waitpid");
	if (!WIFEXITED(status))
		return fail("child killed by signal %d", WTERMSIG(status));
	switch (WEXITSTATUS(status)) {
	case 0:
		return 0;
	case 1:
		return 1;
	default:
		if (!detail[0])
			return fail("child exited %d", WEXITSTATUS(status));
		return -1;
	}
}

/* ---- the features ------------------------------------------------------ */

static int test_pseudo_filesystems(void)
{
	struct statfs st;

	if (mount("proc", "/proc", "proc", 0, NULL))
		return fail_sys("mount proc");
	if (mount("sysfs", "/sys", "sysfs", 0, NULL))
		return fail_sys("mount sysfs");
	/* devtmpfs is already there when init opened the consoles. */
	if (statfs("/dev", &st))
		return fail_sys("statfs /dev");
	if (st.f_type != TMPFS_MAGIC)
		return fail("/dev is not devtmpfs");
	if (mount("tmpfs", "/mnt", "tmpfs", 0, "size=64m"))
		return fail_sys("mount tmpfs on /mnt");
	return pass("proc, sysfs, devtmpfs, tmpfs mounted");
}

static int test_smp(void)
{
	const char *want = getenv("RUNDKIT_CPUS");
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	if (!want)
		return skip("RUNDKIT_CPUS not given");
	if (online != atol(want))
		return fail("%ld CPUs online, expected %s", online, want);
	return pass("%ld CPUs online", online);
}

static const char *const cgroup2_controllers[] = { "cpu", "cpuset", "memory", "pids" };

static int test_cgroup2_controllers(void)
{
	char buf[256];
	size_t i;

	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL))
		return fail_sys("mount cgroup2 on /sys/fs/cgroup");
	if (read_file("/sys/fs/cgroup/cgroup.controllers", buf, sizeof(buf)))
		return fail_sys("read cgroup.controllers");
	for (i = 0; i < ARRAY_SIZE(cgroup2_controllers); i++)
		if (!has_word(buf, cgroup2_controllers[i]))
			return fail("'%s' not in cgroup.controllers (%s)",
				    cgroup2_controllers[i], strtok(buf, "\n"));
	if (write_file("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +cpuset +memory +pids"))
		return fail_sys("enable cpu cpuset memory pids in cgroup.subtree_control");
	if (read_file("/sys/fs/cgroup/cgroup.subtree_control", buf, sizeof(buf)))
		return fail_sys("read cgroup.subtree_control");
	for (i = 0; i < ARRAY_SIZE(cgroup2_controllers); i++)
		if (!has_word(buf, cgroup2_controllers[i]))
			return fail("'%s' not enabled in cgroup.subtree_control",
				    cgroup2_controllers[i]);
	/* A sandbox cgroup with a limit for each controller, as a runtime sets them. */
	if (make_dir("/sys/fs/cgroup/sandbox"))
		return fail_sys("mkdir /sys/fs/cgroup/sandbox");
	if (write_file("/sys/fs/cgroup/sandbox/cpu.max", "50000 100000") ||
	    write_file("/sys/fs/cgroup/sandbox/memory.max", "67108864") ||
	    write_file("/sys/fs/cgroup/sandbox/pids.max", "64") ||
	    write_file("/sys/fs/cgroup/sandbox/cpuset.cpus", "0"))
		return fail_sys("set cpu.max, memory.max, pids.max, cpuset.cpus in sandbox/");
	if (expect_file("/sys/fs/cgroup/sandbox/memory.max", "67108864\n"))
		return -1;
	if (access("/sys/fs/cgroup/sandbox/cgroup.freeze", W_OK))
		return fail_sys("no sandbox/cgroup.freeze");
	return pass("cpu cpuset memory pids enabled, sandbox/ limits set");
}

/* Runs in a child: move into CGROUP (a cgroup.procs path), try /dev/null. */
static int open_null_in(void *cgroup_procs)
{
	char pid[32];
	int fd;

	snprintf(pid, sizeof(pid), "%d", getpid());
	if (write_file(cgroup_procs, pid))
		return fail_sys("write %s", (char *)cgroup_procs);
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0)
		return fail("/dev/null opened in %s", (char *)cgroup_procs);
	if (errno != EPERM)
		return fail_sys("open /dev/null: want EPERM");
	return pass("denied");
}

/*
 * cgroup2 has no devices controller: runc and crun attach a
 * BPF_PROG_TYPE_CGROUP_DEVICE program instead.  This one denies everything.
 */
static int test_cgroup_bpf_device(void)
{
	struct bpf_insn deny_all[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;
	int prog, cg, rc;

	if (make_dir("/sys/fs/cgroup/nodev"))
		return fail_sys("mkdir /sys/fs/cgroup/nodev");
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
	attr.insns = (unsigned long)deny_all;
	attr.insn_cnt = ARRAY_SIZE(deny_all);
	attr.license = (unsigned long)"GPL";
	prog = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (prog < 0)
		return fail_sys("bpf(BPF_PROG_LOAD, CGROUP_DEVICE)");
	cg = open("/sys/fs/cgroup/nodev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0)
		return fail_sys("open /sys/fs/cgroup/nodev");
	memset(&attr, 0, sizeof(attr));
	attr.target_fd = cg;
	attr.attach_bpf_fd = prog;
	attr.attach_type = BPF_CGROUP_DEVICE;
	if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof(attr)))
		return fail_sys("bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE)");
	rc = run_in_child(open_null_in, "/sys/fs/cgroup/nodev/cgroup.procs");
	close(cg);
	close(prog);
	if (rc)
		return rc;
	return pass("device program attached, /dev/null denied in nodev/");
}

/* Runs in a child: stop and wait to be frozen and killed. */
static int sleep_forever(void *unused)
{
	(void)unused;
	for (;;)
		pause();
	return 0;
}

/* wait_for_text: PATH reads TEXT within about two seconds. */
static bool wait_for_text(const char *path, const char *text)
{
	char buf[64];
	int i;

	for (i = 0; i < 200; i++) {
		if (read_file(path, buf, sizeof(buf)) == 0 && strcmp(buf, text) == 0)
			return true;
		sleep_ms(10);
	}
	return false;
}

/*
 * cgroup v1: the controllers that cgroup2 does not have (freezer, devices,
 * cpuacct) on v1 hierarchies beside it, as a runtime on a v1 host would use
 * them.  cpu, memory, pids and cpuset are bound to cgroup2 by now.
 */
static int test_cgroup1_hierarchies(void)
{
	static const char *const v1[] = { "freezer", "devices", "cpuacct" };
	char path[128], pid[32];
	pid_t child;
	size_t i;
	int rc;

	if (make_dir("/mnt/cgroup1") || mount("tmpfs", "/mnt/cgroup1", "tmpfs", 0, NULL))
		return fail_sys("tmpfs for the v1 hierarchies");
	for (i = 0; i < ARRAY_SIZE(v1); i++) {
		snprintf(path, sizeof(path), "/mnt/cgroup1/%s", v1[i]);
		if (make_dir(path) || mount("cgroup", path, "cgroup", 0, v1[i]))
			return fail_sys("mount -t cgroup -o %s", v1[i]);
	}
	if (access("/mnt/cgroup1/cpuacct/cpuacct.usage", R_OK))
		return fail_sys("no cpuacct.usage");

	/* freezer: freeze and thaw a sleeping child. */
	if (make_dir("/mnt/cgroup1/freezer/sandbox"))
		return fail_sys("mkdir freezer/sandbox");
	child = fork();
	if (child < 0)
		return fail_sys("fork");
	if (child == 0)
		_exit(sleep_forever(NULL));
	snprintf(pid, sizeof(pid), "%d", child);
	rc = write_file("/mnt/cgroup1/freezer/sandbox/cgroup.procs", pid) ? fail_sys("move to freezer/sandbox")
	     : write_file("/mnt/cgroup1/freezer/sandbox/freezer.state", "FROZEN") ? fail_sys("write FROZEN")
	     : !wait_for_text("/mnt/cgroup1/freezer/sandbox/freezer.state", "FROZEN\n") ? fail("never FROZEN")
	     : write_file("/mnt/cgroup1/freezer/sandbox/freezer.state", "THAWED") ? fail_sys("write THAWED")
	     : !wait_for_text("/mnt/cgroup1/freezer/sandbox/freezer.state", "THAWED\n") ? fail("never THAWED")
	     : 0;
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	if (rc)
		return rc;

	/* devices: deny all, then /dev/null must not open. */
	if (make_dir("/mnt/cgroup1/devices/sandbox") ||
	    write_file("/mnt/cgroup1/devices/sandbox/devices.deny", "a"))
		return fail_sys("devices/sandbox with devices.deny 'a'");
	rc = run_in_child(open_null_in, "/mnt/cgroup1/devices/sandbox/cgroup.procs");
	if (rc)
		return rc;
	return pass("freezer froze and thawed a task, devices denied /dev/null, cpuacct counts");
}

/*
 * The namespaces a runtime unshares for a container.  The calling process
 * moves into the first six at once; PID and time namespaces are for its
 * children, so a child shows those.
 */
static const struct {
	const char *name;	/* under /proc/self/ns/ */
	int flag;
	bool for_children;
} namespaces[] = {
	{ "mnt", CLONE_NEWNS, false },
	{ "uts", CLONE_NEWUTS, false },
	{ "ipc", CLONE_NEWIPC, false },
	{ "net", CLONE_NEWNET, false },
	{ "user", CLONE_NEWUSER, false },
	{ "cgroup", CLONE_NEWCGROUP, false },
	{ "pid", CLONE_NEWPID, true },
	{ "time", CLONE_NEWTIME, true },
};
#define NR_NAMESPACES ARRAY_SIZE(namespaces)

static int ns_inode(const char *name, ino_t *ino)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	if (stat(path, &st))
		return -1;
	*ino = st.st_ino;
	return 0;
}

/*
 * In the first child of the new namespaces: exit 0 if it is PID 1 and its
 * PID and time namespaces are new, else 1 + the index of what is not.
 */
static void check_child_namespaces(const ino_t *before)
{
	ino_t now;
	size_t i;

	if (getpid() != 1)
		_exit(1 + NR_NAMESPACES);
	for (i = 0; i < NR_NAMESPACES; i++)
		if (namespaces[i].for_children &&
		    (ns_inode(namespaces[i].name, &now) || now == before[i]))
			_exit(1 + i);
	_exit(0);
}

/* Runs in a child: unshare every namespace at once, as a runtime does. */
static int unshare_all(void *unused)
{
	ino_t before[NR_NAMESPACES], now;
	int flags = 0, status;
	size_t i;
	pid_t pid;

	(void)unused;
	for (i = 0; i < NR_NAMESPACES; i++) {
		if (ns_inode(namespaces[i].name, &before[i]))
			return fail_sys("/proc/self/ns/%s", namespaces[i].name);
		flags |= namespaces[i].flag;
	}
	if (unshare(flags))
		return fail_sys("unshare(mnt uts ipc net user cgroup pid time)");
	for (i = 0; i < NR_NAMESPACES; i++) {
		if (namespaces[i].for_children)
			continue;
		if (ns_inode(namespaces[i].name, &now))
			return fail_sys("/proc/self/ns/%s", namespaces[i].name);
		if (now == before[i])
			return fail("%s namespace unchanged", namespaces[i].name);
	}
	/* Full capabilities in the new user namespace, which owns the new UTS one. */
	if (sethostname("sandbox", 7))
		return fail_sys("sethostname in the new UTS namespace");
	pid = fork();
	if (pid < 0)
		return fail_sys("fork into the new PID namespace");
	if (pid == 0)
		check_child_namespaces(before);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return fail_sys("wait for the child in the new namespaces");
	if (WEXITSTATUS(status) == 1 + NR_NAMESPACES)
		return fail("first child in the new PID namespace is not PID 1");
	if (WEXITSTATUS(status))
		return fail("child's %s namespace is not new",
			    namespaces[WEXITSTATUS(status) - 1].name);
	return pass("mnt uts ipc net user cgroup pid time unshared; the child is PID 1 in new PID and time namespaces");
}

static int test_namespaces(void)
{
	return run_in_child(unshare_all, NULL);
}

static int write_new(const char *path, const char *text, int flags)
{
	ssize_t len = strlen(text);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);

	if (fd < 0)
		return -1;
	if (write(fd, text, len) != len || fsync(fd)) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return close(fd);
}

/* Container rootfs shape: a read-only lower, a tmpfs upper. */
static int test_overlayfs(void)
{
	struct stat st;

	if (make_dir("/mnt/ovl") || mount("tmpfs", "/mnt/ovl", "tmpfs", 0, NULL) ||
	    make_dir("/mnt/ovl/lower") || make_dir("/mnt/ovl/upper") ||
	    make_dir("/mnt/ovl/work") || make_dir("/mnt/ovl/merged"))
		return fail_sys("overlay directories on tmpfs");
	if (write_new("/mnt/ovl/lower/kept", "lower\n", O_TRUNC) ||
	    write_new("/mnt/ovl/lower/removed", "lower\n", O_TRUNC))
		return fail_sys("lower files");
	if (mount("overlay", "/mnt/ovl/merged", "overlay", 0,
		  "lowerdir=/mnt/ovl/lower,upperdir=/mnt/ovl/upper,workdir=/mnt/ovl/work"))
		return fail_sys("mount -t overlay");
	if (write_new("/mnt/ovl/merged/kept", "upper\n", O_APPEND))
		return fail_sys("append to merged/kept (copy-up)");
	if (unlink("/mnt/ovl/merged/removed"))
		return fail_sys("unlink merged/removed");
	/* The copy-up holds both lines; the lower file is untouched. */
	if (expect_file("/mnt/ovl/upper/kept", "lower\nupper\n") ||
	    expect_file("/mnt/ovl/lower/kept", "lower\n"))
		return -1;
	if (stat("/mnt/ovl/upper/removed", &st))
		return fail_sys("no whiteout for merged/removed in upper/");
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(0, 0))
		return fail("upper/removed is not a whiteout (0:0 character device)");
	if (access("/mnt/ovl/merged/removed", F_OK) == 0)
		return fail("merged/removed still visible");
	if (errno != ENOENT)
		return fail_sys("access merged/removed");
	if (umount("/mnt/ovl/merged"))
		return fail_sys("umount overlay");
	return pass("copy-up and whiteout on a tmpfs upper");
}

/* wait_for_path: PATH exists within about SECONDS seconds. */
static bool wait_for_path(const char *path, int seconds)
{
	int i;

	for (i = 0; i < seconds * 20; i++) {
		if (access(path, F_OK) == 0)
			return true;
		sleep_ms(50);
	}
	return false;
}

static int test_virtio_blk_ext4(void)
{
	struct statfs st;

	if (!wait_for_path("/dev/vda", 5))
		return fail("no /dev/vda after 5 s");
	if (make_dir("/mnt/disk") || mount("/dev/vda", "/mnt/disk", "ext4", 0, NULL))
		return fail_sys("mount -t ext4 /dev/vda read-write");
	if (statfs("/mnt/disk", &st))
		return fail_sys("statfs /mnt/disk");
	if (st.f_type != EXT4_SUPER_MAGIC)
		return fail("/mnt/disk is not ext4");
	if (expect_file("/mnt/disk/from-host", HOST_TEXT))
		return -1;
	if (write_new("/mnt/disk/from-guest", GUEST_TEXT, O_TRUNC))
		return fail_sys("write /from-guest on the disk");
	/* Read it back through a fresh mount, not the page cache. */
	if (umount("/mnt/disk") || mount("/dev/vda", "/mnt/disk", "ext4", MS_RDONLY, NULL))
		return fail_sys("remount /dev/vda");
	if (expect_file("/mnt/disk/from-guest", GUEST_TEXT))
		return -1;
	if (umount("/mnt/disk"))
		return fail_sys("umount /dev/vda");
	return pass("/dev/vda mounted rw, read /from-host, wrote /from-guest");
}

static int test_9p_readonly(void)
{
	int fd;

	if (make_dir("/mnt/share") ||
	    mount("share", "/mnt/share", "9p", MS_RDONLY, "trans=virtio,version=9p2000.L"))
		return fail_sys("mount -t 9p -o trans=virtio,ro share");
	if (expect_file("/mnt/share/from-host", HOST_TEXT))
		return -1;
	fd = open("/mnt/share/from-guest", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		return fail("created a file on the read-only share");
	if (errno != EROFS)
		return fail_sys("creating on the read-only share: want EROFS");
	return pass("share mounted read-only, read /from-host, writes refused (EROFS)");
}

static int test_virtio_net(void)
{
	const char *mac = getenv("RUNDKIT_MAC");
	char path[300], buf[64], driver[256];
	struct ifreq ifr;
	struct dirent *de;
	DIR *dir;
	int sock;
	ssize_t len;

	if (!mac)
		return skip("RUNDKIT_MAC not given");
	memset(&ifr, 0, sizeof(ifr));
	dir = opendir("/sys/class/net");
	if (!dir)
		return fail_sys("opendir /sys/class/net");
	while ((de = readdir(dir))) {
		snprintf(path, sizeof(path), "/sys/class/net/%s/address", de->d_name);
		if (strlen(de->d_name) < sizeof(ifr.ifr_name) &&
		    read_file(path, buf, sizeof(buf)) == 0 && strncmp(buf, mac, strlen(mac)) == 0) {
			memcpy(ifr.ifr_name, de->d_name, strlen(de->d_name) + 1);
			break;
		}
	}
	closedir(dir);
	if (!ifr.ifr_name[0])
		return fail("no interface with address %s", mac);
	snprintf(path, sizeof(path), "/sys/class/net/%s/device/driver", ifr.ifr_name);
	len = readlink(path, driver, sizeof(driver) - 1);
	if (len < 0)
		return fail_sys("readlink %s", path);
	driver[len] = '\0';
	if (strcmp(strrchr(driver, '/') + 1, "virtio_net"))
		return fail("%s is driven by %s", ifr.ifr_name, driver);
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return fail_sys("socket(AF_INET)");
	if (ioctl(sock, SIOCGIFFLAGS, &ifr))
		return fail_sys("SIOCGIFFLAGS %s", ifr.ifr_name);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) || ioctl(sock, SIOCGIFFLAGS, &ifr) ||
	    !(ifr.ifr_flags & IFF_UP))
		return fail_sys("bring %s up", ifr.ifr_name);
	close(sock);
	return pass("%s (virtio_net, %s) is up", ifr.ifr_name, mac);
}

static int vsock_listener = -1;

static int test_vsock_listener(void)
{
	struct sockaddr_vm addr = {
		.svm_family = AF_VSOCK,
		.svm_cid = VMADDR_CID_ANY,
		.svm_port = VSOCK_PORT,
	};

	vsock_listener = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (vsock_listener < 0)
		return fail_sys("socket(AF_VSOCK)");
	if (bind(vsock_listener, (struct sockaddr *)&addr, sizeof(addr)))
		return fail_sys("bind vsock port %d", VSOCK_PORT);
	if (listen(vsock_listener, 16))
		return fail_sys("listen on vsock port %d", VSOCK_PORT);
	return pass("AF_VSOCK stream socket listening on port %d", VSOCK_PORT);
}

/* The virtio transport reports the CID the VMM gave the vsock device. */
static int test_vsock_device(void)
{
	const char *want = getenv("RUNDKIT_VSOCK_CID");
	unsigned int cid = VMADDR_CID_ANY;
	int fd;

	if (!want)
		return skip("no vsock device attached");
	fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail_sys("open /dev/vsock");
	if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid))
		return fail_sys("IOCTL_VM_SOCKETS_GET_LOCAL_CID");
	close(fd);
	if (cid != strtoul(want, NULL, 10))
		return fail("local CID %u, expected %s", cid, want);
	return pass("virtio vsock transport up, local CID %u", cid);
}

/* Runs in a child: a filter that makes getppid() fail with a marker errno. */
static int seccomp_getppid(void *unused)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | SECCOMP_TEST_ERRNO),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { ARRAY_SIZE(filter), filter };

	(void)unused;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return fail_sys("PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return fail_sys("PR_SET_SECCOMP, SECCOMP_MODE_FILTER");
	errno = 0;
	if (syscall(SYS_getppid) != -1 || errno != SECCOMP_TEST_ERRNO)
		return fail("getppid() was not filtered (errno %d)", errno);
	if (syscall(SYS_getpid) <= 0)
		return fail("getpid() was filtered too");
	return pass("filter returned errno %d for getppid() only", SECCOMP_TEST_ERRNO);
}

static int test_seccomp_filter(void)
{
	return run_in_child(seccomp_getppid, NULL);
}

/* ---- hotplug: the host adds a vCPU and a DIMM once it sees hotplug-ready */

static long mem_total_kb(void)
{
	char buf[128];
	long kb = -1;

	if (read_file("/proc/meminfo", buf, sizeof(buf)) == 0)
		sscanf(buf, "MemTotal: %ld kB", &kb);
	return kb;
}

/* online_new_memory: write "online" to every offline memory block. */
static int online_new_memory(void)
{
	char path[300], state[32];
	struct dirent *de;
	int onlined = 0;
	DIR *dir;

	dir = opendir("/sys/devices/system/memory");
	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		if (strncmp(de->d_name, "memory", 6))
			continue;
		snprintf(path, sizeof(path), "/sys/devices/system/memory/%s/state", de->d_name);
		if (read_file(path, state, sizeof(state)) == 0 && strcmp(state, "offline\n") == 0 &&
		    write_file(path, "online") == 0)
			onlined++;
	}
	closedir(dir);
	return onlined;
}

static long cpus_before, mem_before_kb, mem_after_kb;
static int blocks_onlined;
static bool cpu_onlined;

/*
 * Announce hotplug-ready, then for up to a minute bring online whatever the
 * host adds: the vCPU through its sysfs online file, memory block by block.
 * The guest decides, as an agent does when its runtime asks for resources.
 */
static void take_hotplug(void)
{
	double deadline;

	cpus_before = sysconf(_SC_NPROCESSORS_ONLN);
	mem_before_kb = mem_total_kb();
	emit("hotplug-ready: %ld CPUs, MemTotal %ld kB", cpus_before, mem_before_kb);
	deadline = uptime() + 60;
	while (uptime() < deadline) {
		char path[64];

		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%ld/online", cpus_before);
		if (!cpu_onlined && access(path, F_OK) == 0 && write_file(path, "1") == 0)
			cpu_onlined = true;
		blocks_onlined += online_new_memory();
		mem_after_kb = mem_total_kb();
		/* The host adds one 128 MiB DIMM: one block on x86_64. */
		if (cpu_onlined && mem_after_kb - mem_before_kb >= 128 * 1024)
			break;
		sleep_ms(100);
	}
}

static int test_cpu_hotplug(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (!cpu_onlined)
		return fail("no new vCPU appeared or it would not online (%ld online)", cpus);
	if (cpus != cpus_before + 1)
		return fail("%ld CPUs online after hotplug, expected %ld", cpus, cpus_before + 1);
	return pass("cpu%ld added and onlined: %ld -> %ld CPUs online", cpus_before, cpus_before, cpus);
}

static int test_memory_hotplug(void)
{
	if (!blocks_onlined)
		return fail("no new memory block appeared or it would not online");
	if (mem_after_kb - mem_before_kb < 128 * 1024)
		return fail("MemTotal grew %ld kB only", mem_after_kb - mem_before_kb);
	return pass("%d block(s) onlined: MemTotal %ld -> %ld kB", blocks_onlined, mem_before_kb,
		    mem_after_kb);
}

/* ---- PID 1 ------------------------------------------------------------- */

/* The kernel log, for the console of a run that failed. */
static void dump_kernel_log(void)
{
	static char log[1 << 17];
	int len = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, sizeof(log));

	if (len > 0) {
		emit("---- kernel log ----");
		if (out_fds[0] >= 0)
			(void)!write(out_fds[0], log, len);
	}
}

int main(void)
{
	double reached = uptime();
	const char *hotplug = getenv("RUNDKIT_HOTPLUG");

	/* The initramfs has no /dev: devtmpfs gives the console nodes. */
	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	out_fds[0] = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	out_fds[1] = open("/dev/hvc0", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	emit("feature-init: running, %.3f s of kernel uptime", reached);
	if (out_fds[1] < 0) {
		emit("not ok virtio-console: open /dev/hvc0: %s", strerror(errno));
		failures++;
	} else {
		emit("ok virtio-console: results also on /dev/hvc0");
	}

	run_feature("pseudo-filesystems", test_pseudo_filesystems);
	run_feature("smp", test_smp);
	run_feature("cgroup2-controllers", test_cgroup2_controllers);
	run_feature("cgroup-bpf-device", test_cgroup_bpf_device);
	run_feature("cgroup1-hierarchies", test_cgroup1_hierarchies);
	run_feature("namespaces", test_namespaces);
	run_feature("seccomp-filter", test_seccomp_filter);
	run_feature("overlayfs", test_overlayfs);
	run_feature("virtio-blk-ext4", test_virtio_blk_ext4);
	run_feature("9p-readonly", test_9p_readonly);
	run_feature("virtio-net", test_virtio_net);
	run_feature("vsock-listener", test_vsock_listener);
	run_feature("vsock-device", test_vsock_device);
	if (hotplug && strcmp(hotplug, "1") == 0) {
		take_hotplug();
		run_feature("cpu-hotplug", test_cpu_hotplug);
		run_feature("memory-hotplug", test_memory_hotplug);
	}

	emit("done: %d failed, %.3f s of kernel uptime", failures, uptime());
	if (failures)
		dump_kernel_log();
	sync();
	reboot(RB_AUTOBOOT);
	return 0;
}
