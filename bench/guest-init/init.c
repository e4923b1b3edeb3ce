// SPDX-License-Identifier: GPL-2.0
/*
 * The init of scripts/bench-guest: one static binary, the only file of the
 * initramfs every benchmarked kernel boots.
 *
 * It prints, on the console, one line per fact the host needs and nothing
 * else the host has to parse:
 *
 *   rundkit-bench: init            first thing, before any syscall the
 *                                  kernels could differ on: the host times
 *                                  QEMU start -> this line
 *   rundkit-bench: uptime S        /proc/uptime's first figure, just after
 *                                  the marker (the guest's clock)
 *   rundkit-bench: uname R         kernel release
 *   rundkit-bench: cpus N          online CPUs seen by the guest
 *   rundkit-bench: meminfo K V     MemTotal, MemFree, MemAvailable, ... (kB),
 *                                  read SETTLE_SECS after the marker
 *   rundkit-bench: bootmem LINE    the kernel's "Memory: ..." boot line
 *   rundkit-bench: sym NAME ADDR   _stext and _etext from /proc/kallsyms
 *   rundkit-bench: ready           the host may now read guest memory
 *
 * then blocks reading the console until the host writes a line (after its
 * pmemsave of the kernel text), and powers off.  A watchdog alarm powers off
 * anyway if the host never answers, so a lost host cannot leave a guest
 * spinning.  A missing feature (no kallsyms, no printk buffer) prints "n/a"
 * rather than failing: the condensed kernel may leave them out, and the host
 * then falls back to the vmlinux symbols.
 *
 * Raw syscalls and write(2) only after the marker, no stdio buffering: what
 * the host sees is what was written, in order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#define TAG "rundkit-bench: "
/* Seconds the guest waits for the host's go-ahead before powering off. */
#define WATCHDOG_SECS 120
/* Seconds between the marker and reading /proc/meminfo. */
#define SETTLE_SECS 1

static void out(const char *s)
{
	size_t len = strlen(s);

	while (len) {
		ssize_t n = write(1, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= n;
	}
}

static void line(const char *a, const char *b)
{
	out(TAG);
	out(a);
	if (b) {
		out(" ");
		out(b);
	}
	out("\n");
}

/* Read a whole small file (or its first bufsz-1 bytes); -1 if unreadable. */
static ssize_t slurp(const char *path, char *buf, size_t bufsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	while (len < bufsz - 1 && (n = read(fd, buf + len, bufsz - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += n;
	}
	close(fd);
	buf[len] = '\0';
	return len;
}

static void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	/* Without ACPI power-off the kernel halts; -no-reboot QEMU stays, the host kills it. */
	for (;;)
		pause();
}

static void on_alarm(int sig)
{
	(void)sig;
	line("watchdog", "no go-ahead from the host, powering off");
	power_off();
}

/*
 * The guest's own clock at init: how much of the host-timed boot the kernel
 * spent, as opposed to QEMU, firmware and the decompressor.
 */
static void print_uptime(void)
{
	char buf[64];

	if (slurp("/proc/uptime", buf, sizeof(buf)) < 0) {
		line("uptime", "n/a");
		return;
	}
	buf[strcspn(buf, " ")] = '\0';
	line("uptime", buf);
}

static void print_meminfo(void)
{
	static char buf[8192];
	char *l, *save;

	if (slurp("/proc/meminfo", buf, sizeof(buf)) < 0) {
		line("meminfo", "n/a");
		return;
	}
	for (l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char key[64];
		unsigned long long kb;

		/* "MemTotal:        498124 kB" -> "MemTotal 498124" */
		if (sscanf(l, "%63[^:]: %llu", key, &kb) == 2) {
			char kv[96];

			snprintf(kv, sizeof(kv), "%s %llu", key, kb);
			line("meminfo", kv);
		}
	}
}

/*
 * The "Memory: ...K/...K available (...)" line mm_init prints.  The console
 * is quiet (loglevel) so that no kernel pays for serial output during the
 * timed boot; the line is still in the printk buffer.
 */
static void print_bootmem(void)
{
	int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	char *buf, *l, *save;
	int n;

	if (size <= 0 || !(buf = malloc(size + 1))) {
		line("bootmem", "n/a");
		return;
	}
	n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	for (l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *m = strstr(l, "Memory: ");

		if (m && strstr(m, "available")) {
			line("bootmem", m);
			free(buf);
			return;
		}
	}
	free(buf);
	line("bootmem", "n/a");
}

/*
 * _stext/_etext as the running kernel sees them.  kptr_restrict is set to 0
 * first so that root reads real addresses (Debian kernels may default to 1).
 * kallsyms is read line by line through a small window: the file is large
 * and the two symbols sit near its start.
 */
static void print_text_syms(void)
{
	static char buf[65536];
	int fd, found = 0;
	size_t have = 0;
	ssize_t n;

	fd = open("/proc/sys/kernel/kptr_restrict", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "0\n", 2) < 0)
			line("note", "cannot reset kptr_restrict");
		close(fd);
	}
	fd = open("/proc/kallsyms", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		line("sym", "n/a");
		return;
	}
	while (found < 2 && (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
		char *start = buf, *nl;

		have += n;
		buf[have] = '\0';
		while ((nl = strchr(start, '\n'))) {
			char addr[32], type[4], name[128];

			*nl = '\0';
			if (sscanf(start, "%31s %3s %127s", addr, type, name) == 3 &&
			    (!strcmp(name, "_stext") || !strcmp(name, "_etext"))) {
				char kv[192];

				snprintf(kv, sizeof(kv), "%s %s", name, addr);
				line("sym", kv);
				found++;
			}
			start = nl + 1;
		}
		have = buf + have - start;
		memmove(buf, start, have);
	}
	close(fd);
	if (found < 2)
		line("sym", "n/a");
}

int main(void)
{
	struct utsname u;
	char buf[64];
	long cpus;

	line("init", NULL);

	signal(SIGALRM, on_alarm);
	alarm(WATCHDOG_SECS);

	mkdir("/proc", 0555);
	if (mount("proc", "/proc", "proc", 0, NULL) < 0)
		line("note", "mounting /proc failed");
	print_uptime();

	if (uname(&u) == 0)
		line("uname", u.release);
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	snprintf(buf, sizeof(buf), "%ld", cpus);
	line("cpus", buf);
	/*
	 * Let what the kernel started asynchronously at the end of boot
	 * (deferred probes, workqueue items) settle, so that the memory figure
	 * is the steady state after boot, not a snapshot of its tail.
	 */
	sleep(SETTLE_SECS);
	print_meminfo();
	print_bootmem();
	print_text_syms();
	line("ready", NULL);

	/* Block until the host has saved the text and writes a line back. */
	while (read(0, buf, sizeof(buf)) < 0 && errno == EINTR)
		;
	line("poweroff", NULL);
	power_off();
	return 0;
}
