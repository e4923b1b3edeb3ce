# shellcheck shell=bash
# Shared helpers for rundkit scripts.  Source it; do not run it.
#
# Every ensure_* function states what holds when it returns, and either makes
# it so or dies with a message that says what is missing.

set -euo pipefail

RUNDKIT_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNDKIT_BUILD=${RUNDKIT_BUILD:-$RUNDKIT_TOP/build}
# KVER (make KVER=6.12, or the environment) picks the Debian kernel series:
# /usr/src/linux-source-$KVER, kernel-patches/host/$KVER, build/kernel/$KVER.
KERNEL_VERSION=${KVER:-${KERNEL_VERSION:-6.1}}
JOBS=${JOBS:-$(nproc)}

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }
# need_arg OPTION ARGS...: in an option loop, OPTION has a non-empty value.
need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }

# Print seconds since the epoch with sub-second precision, for step timings.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ensure_root: the caller is uid 0.
ensure_root() {
	[ "$(id -u)" = 0 ] || die "must run as root (cgroupfs, loop devices and apt need it)"
}

# ensure_cmd CMD PACKAGE: CMD is on PATH, or we say which package provides it.
ensure_cmd() {
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' not found: install Debian package '$2' (or run: make deps)"
}

# ensure_distro_source: the pristine Debian linux-source-$KERNEL_VERSION tree
# is extracted, whole, at $RUNDKIT_BUILD/kernel/$KERNEL_VERSION/stock/linux
# and its path is printed.  It is never patched or built in-tree.  Extraction goes to a temporary directory renamed into
# place at the end, so a crash never leaves a partial tree behind.
ensure_distro_source() {
	local tarball=/usr/src/linux-source-$KERNEL_VERSION.tar.xz
	local dest=$RUNDKIT_BUILD/kernel/$KERNEL_VERSION/stock/linux
	if [ -f "$dest/.rundkit-pristine" ]; then
		echo "$dest"
		return
	fi
	[ -f "$tarball" ] ||
		die "$tarball missing: apt-get install linux-source-$KERNEL_VERSION"
	mkdir -p "$(dirname "$dest")"
	rm -rf "$dest" "$dest.tmp"
	mkdir "$dest.tmp"
	say "extracting $tarball"
	tar -xf "$tarball" -C "$dest.tmp" --strip-components=1
	sha256sum "$tarball" >"$dest.tmp/.rundkit-pristine"
	mv "$dest.tmp" "$dest"
	echo "$dest"
}

# cloud_kernel_package: prints "PACKAGE VERSION" of Debian's current cloud
# kernel (linux-image-cloud-amd64, the distro's slim guest kernel): the
# metapackage only depends on the real, versioned image package, which is
# what is fetched.  Dies unless it is a $KERNEL_VERSION kernel.
cloud_kernel_package() {
	local pkg ver
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1)
	[ -n "$pkg" ] ||
		die "apt-cache knows no linux-image-cloud-amd64 dependency (Debian main in sources.list? apt-get update?)"
	ver=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
	[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "apt-cache has no candidate version of $pkg"
	# The comparisons are within one kernel series: another release's cloud
	# kernel (another Debian suite) would not say what condensing did.
	case "$ver" in
	"$KERNEL_VERSION".*) ;;
	*) die "$pkg is version $ver, not a $KERNEL_VERSION kernel: this Debian suite's cloud kernel does not match linux-source-$KERNEL_VERSION" ;;
	esac
	echo "$pkg $ver"
}

# ensure_cloud_kernel DIR: DIR/{bzImage,vmlinux} are Debian's current cloud
# kernel (cloud_kernel_package), DIR/root the unpacked package (its
# modules), and DIR/package names it ("PACKAGE VERSION").  Fetched with
# apt-get download: never installed.
ensure_cloud_kernel() {
	local dir=$1 pkg ver pkgver src deb
	ensure_cmd apt-get apt
	ensure_cmd dpkg-deb dpkg
	# scripts/extract-vmlinux needs the decompressor of the cloud bzImage (LZ4).
	ensure_cmd lz4 lz4
	pkgver=$(cloud_kernel_package)
	read -r pkg ver <<<"$pkgver"
	if [ -f "$dir/package" ] && [ "$(cat "$dir/package")" = "$pkg $ver" ] &&
		[ -f "$dir/bzImage" ] && [ -f "$dir/vmlinux" ]; then
		return
	fi
	src=$(ensure_distro_source)
	rm -rf "$dir"
	mkdir -p "$dir/deb"
	say "downloading $pkg $ver (apt-get download; not installed)"
	(cd "$dir/deb" && apt-get download "$pkg=$ver") >"$dir/download.log" 2>&1 ||
		die "apt-get download $pkg=$ver failed (log: $dir/download.log)"
	deb=$(find "$dir/deb" -name "${pkg}_*.deb" | head -n 1)
	[ -n "$deb" ] || die "apt-get download left no ${pkg}_*.deb in $dir/deb"
	dpkg-deb -x "$deb" "$dir/root"
	cp "$dir/root/boot/vmlinuz-${pkg#linux-image-}" "$dir/bzImage" ||
		die "$deb has no /boot/vmlinuz-${pkg#linux-image-}"
	"$src/scripts/extract-vmlinux" "$dir/bzImage" >"$dir/vmlinux.tmp" ||
		die "extract-vmlinux found no vmlinux in $dir/bzImage"
	mv "$dir/vmlinux.tmp" "$dir/vmlinux"
	echo "$pkg $ver" >"$dir/package"
}

# series_files DIR: the patch files of DIR/series, in order, one per line.
# Blank lines and '#' comments are skipped; a listed file that is missing is
# an error.
series_files() {
	local dir=$1 line
	[ -f "$dir/series" ] || die "$dir/series: no such file"
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%%#*}
		line=$(echo "$line" | xargs)
		[ -n "$line" ] || continue
		[ -f "$dir/$line" ] || die "$dir/series lists '$line' but $dir/$line does not exist"
		echo "$dir/$line"
	done <"$dir/series"
}

# series_id DIR: a hash naming exactly this series (file names and contents).
series_id() {
	local f
	{
		for f in $(series_files "$1"); do
			basename "$f"
			cat "$f"
		done
	} | sha256sum | cut -c1-16
}

# check_series TREE DIR: every patch of DIR/series applies, in order, to TREE,
# which is not modified.  The touched files are copied to a scratch tree and
# the series applied there; a failure names the patch and the hunk.
check_series() {
	local tree=$1 dir=$2 scratch f out rel
	scratch=$(mktemp -d "${TMPDIR:-/tmp}/rundkit-series.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$scratch'" RETURN
	for f in $(series_files "$dir"); do
		# Both sides of every file header: new files have --- /dev/null.
		for rel in $(sed -n -e 's|^--- a/||p' -e 's|^+++ b/||p' "$f" | sort -u); do
			if [ -e "$tree/$rel" ] && [ ! -e "$scratch/$rel" ]; then
				mkdir -p "$scratch/$(dirname "$rel")"
				cp -p "$tree/$rel" "$scratch/$rel"
			fi
		done
	done
	for f in $(series_files "$dir"); do
		if ! out=$(patch -d "$scratch" -p1 -N -F0 --no-backup-if-mismatch -s <"$f" 2>&1); then
			printf '%s\n' "$out" | sed 's/^/    /' >&2
			die "patch $(basename "$f") does not apply to $tree (see the failed hunk above); nothing was changed"
		fi
	done
}

# apply_series TREE DIR: apply DIR/series to TREE after check_series has
# passed.  Records the series id in TREE/.rundkit-series.
apply_series() {
	local tree=$1 dir=$2 f
	for f in $(series_files "$dir"); do
		patch -d "$tree" -p1 -N -F0 --no-backup-if-mismatch -s <"$f" >/dev/null ||
			die "patch $(basename "$f") failed on $tree after a clean check (tree changed underneath?)"
	done
	series_id "$dir" >"$tree/.rundkit-series"
}

# configure_kernel OBJ SRC FRAGMENT...: OBJ/.config is tinyconfig plus the
# fragments, resolved by olddefconfig (options the tree does not know drop).
configure_kernel() {
	local obj=$1 src=$2
	shift 2
	mkdir -p "$obj"
	make -s -C "$src" O="$obj" tinyconfig >/dev/null
	(cd "$obj" && "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$@" >/dev/null)
	make -s -C "$src" O="$obj" olddefconfig >/dev/null
}

# merge_kernel_config OBJ SRC FRAGMENT...: configure_kernel, and every
# CONFIG_ line of every fragment holds in the result.  Lists the options
# that did not make it and fails if there are any.
merge_kernel_config() {
	configure_kernel "$@"
	local obj=$1
	shift 2
	verify_kernel_config "$obj/.config" "$@"
}

# verify_kernel_config CONFIG FRAGMENT...: every option a fragment sets has
# that value in CONFIG ('# CONFIG_X is not set' counts as n).
verify_kernel_config() {
	local config=$1 frag line sym want have missing=""
	shift
	for frag in "$@"; do
		while IFS= read -r line; do
			case "$line" in
			CONFIG_*=*) sym=${line%%=*} want=${line#*=} ;;
			"# CONFIG_"*" is not set") sym=${line#\# } sym=${sym%% *} want=n ;;
			*) continue ;;
			esac
			have=$(sed -n -e "s/^$sym=//p" -e "s/^# $sym is not set/n/p" "$config")
			[ -n "$have" ] || have=n
			[ "$have" = "$want" ] || missing="$missing $sym=$want(got $have)"
		done <"$frag"
	done
	[ -z "$missing" ] || die "options asked for but not in $config:$missing"
}

# detect_accel: prints 'kvm' when /dev/kvm can boot a standard guest, else
# 'tcg'.  RUNDKIT_ACCEL overrides.  The answer is cached per boot of the
# host, because the probe boots a guest (a PVM host hangs under KVM).
detect_accel() {
	if [ -n "${RUNDKIT_ACCEL:-}" ]; then
		echo "$RUNDKIT_ACCEL"
		return
	fi
	if [ ! -w /dev/kvm ]; then
		echo tcg
		return
	fi
	local cache
	cache=$RUNDKIT_BUILD/accel.$(cat /proc/sys/kernel/random/boot_id)
	if [ ! -f "$cache" ]; then
		"$RUNDKIT_TOP/scripts/kvm-probe" >"$cache.tmp" 2>/dev/null || echo tcg >"$cache.tmp"
		mv "$cache.tmp" "$cache"
	fi
	cat "$cache"
}

# configure_kernel_allno OBJ SRC FRAGMENT...: OBJ/.config is allnoconfig
# with the fragments merged in by the kernel's own merge_config.sh -n, so
# that whatever no fragment names is n wherever Kconfig allows.  The merge
# log goes to OBJ/merge_config.log; check the result with
# verify_kernel_config, which merge_config.sh only warns about.
configure_kernel_allno() {
	local obj=$1 src=$2
	shift 2
	mkdir -p "$obj"
	# This first make writes OBJ/Makefile, through which merge_config.sh's
	# own make runs: started in OBJ, its scratch files stay out of SRC.
	make -s -C "$src" O="$obj" allnoconfig >/dev/null
	(cd "$obj" && "$src/scripts/kconfig/merge_config.sh" -n -O "$obj" "$@") \
		>"$obj/merge_config.log" 2>&1 ||
		die "merge_config.sh failed (see $obj/merge_config.log)"
}

# ensure_patched_tree SERIES_DIR TREE: TREE holds the pristine Debian source
# with exactly SERIES_DIR/series applied (stamp: TREE/.rundkit-series), and
# its path is printed.  The series is checked against the pristine tree
# before anything is touched.  A new tree is a hard-linked copy of the
# pristine one, patched, then renamed into place: patch and rsync replace a
# file by renaming a new one over it and never write through a link, so the
# pristine tree stays pristine.  A tree carrying another version of the
# series is brought over file by file, so that make rebuilds only what the
# new series touches; its stamp goes first and comes back last, so a crash
# in between leaves a tree the next run redoes.
ensure_patched_tree() {
	local dir=$1 tree=$2 want pristine
	want=$(series_id "$dir")
	if [ -f "$tree/.rundkit-series" ] && [ "$(cat "$tree/.rundkit-series")" = "$want" ]; then
		echo "$tree"
		return
	fi
	pristine=$(ensure_distro_source)
	check_series "$pristine" "$dir"
	rm -rf "$tree.tmp"
	mkdir -p "$(dirname "$tree")"
	cp -al "$pristine" "$tree.tmp"
	rm -f "$tree.tmp/.rundkit-pristine"
	apply_series "$tree.tmp" "$dir"
	if [ -d "$tree" ]; then
		rm -f "$tree/.rundkit-series"
		rsync -a --checksum --delete --exclude=/.rundkit-series "$tree.tmp/" "$tree/"
		mv "$tree.tmp/.rundkit-series" "$tree/.rundkit-series"
		rm -rf "$tree.tmp"
	else
		mv "$tree.tmp" "$tree"
	fi
	say "applied $(series_files "$dir" | wc -l) patches in $tree"
	echo "$tree"
}

# kernel_splats LOG: print each kernel warning, BUG, lockdep or KASAN
# report, oops or panic in the kernel log LOG, with what follows it; false
# if there is none.  A test that passes while its kernel splats has not
# passed.
kernel_splats() {
	grep -E -A25 'WARNING:|BUG:|BUG kmalloc|KASAN:|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|Kernel panic|Oops:|general protection fault' "$1"
}

# Build outputs that take minutes (kernels, their selftests, the stock
# kernel's kselftest results) are cached outside the clone, the way ccache
# caches objects: under a key of everything that determines them, so that a
# change to any input misses and rebuilds, and a fresh clone on a machine
# that has built the same inputs before reuses them.  RUNDKIT_CACHE moves
# the cache; RUNDKIT_NO_CACHE=1 neither reads nor writes it.
RUNDKIT_CACHE=${RUNDKIT_CACHE:-/var/cache/rundkit}

# cache_key WORD...: a 16-hex-digit key of the WORDs.  A WORD that names an
# existing file stands for its content; anything else for itself.  Callers
# pass the script and function text that builds the output (declare -f), the
# inputs' files, and the toolchain's versions.
cache_key() {
	local w
	for w in "$@"; do
		if [ -f "$w" ]; then
			printf 'file %s\n' "${w##*/}"
			sha256sum <"$w"
		else
			printf 'word %s\n' "$w"
		fi
	done | sha256sum | cut -c1-16
}

# toolchain_id: what the compiler and linker are, for cache keys.
toolchain_id() {
	printf '%s|%s' "$(gcc -dumpfullversion -dumpversion 2>/dev/null)" "$(ld --version 2>/dev/null | head -n 1)"
}

# distro_source_id: the exact Debian linux-source package the trees come from.
distro_source_id() {
	dpkg-query -W -f='${Package}=${Version}' "linux-source-$KERNEL_VERSION" 2>/dev/null ||
		die "linux-source-$KERNEL_VERSION is not installed (run: make deps)"
}

# cache_fetch NAME DEST: copy the cache entry NAME into DEST (replacing what
# DEST holds) and succeed, or fail if there is no such entry.  An entry is
# complete or absent: cache_store renames it into place whole.
cache_fetch() {
	local entry=$RUNDKIT_CACHE/$1 dest=$2
	[ -z "${RUNDKIT_NO_CACHE:-}" ] && [ -f "$entry/.complete" ] || return 1
	mkdir -p "$dest"
	cp -a "$entry/." "$dest/"
	rm -f "$dest/.complete"
}

# cache_store NAME SRC...: store the files and directories SRC as the cache
# entry NAME.  Written to a temporary entry and renamed into place, so a
# crash or a concurrent store never leaves a partial entry; a failure to
# write the cache (a full disk, a read-only /var) is reported, not fatal.
cache_store() {
	local name=$1 tmp
	shift
	[ -z "${RUNDKIT_NO_CACHE:-}" ] || return 0
	mkdir -p "$RUNDKIT_CACHE" 2>/dev/null || { say "cache $RUNDKIT_CACHE not writable; not caching $name"; return 0; }
	tmp=$(mktemp -d "$RUNDKIT_CACHE/.tmp.XXXXXX") || { say "cannot write $RUNDKIT_CACHE; not caching $name"; return 0; }
	if cp -a "$@" "$tmp/" && touch "$tmp/.complete" && mkdir -p "$(dirname "$RUNDKIT_CACHE/$name")"; then
		rm -rf "${RUNDKIT_CACHE:?}/$name"
		mv "$tmp" "$RUNDKIT_CACHE/$name" && return 0
	fi
	rm -rf "$tmp"
	say "could not store $name in $RUNDKIT_CACHE (disk full?); continuing without"
}

# tap_number: read result lines 'ok DESCRIPTION' / 'not ok DESCRIPTION'
# (directives such as '# SKIP' included) on stdin and write a TAP 13
# document with its plan first and every result numbered in order, so that
# nothing (a VM that died, a missing result) ever lands after the plan.
tap_number() {
	awk '
		/^(not )?ok / { line[++n] = $0; next }
		NF { other[++m] = $0 }
		END {
			print "TAP version 13"
			printf "1..%d\n", n
			for (i = 1; i <= n; i++) {
				ok = (line[i] ~ /^ok /) ? "ok" : "not ok"
				desc = line[i]; sub(/^(not )?ok /, "", desc)
				printf "%s %d %s\n", ok, i, desc
			}
			for (i = 1; i <= m; i++) print "# " other[i]
		}'
}

# gtest_results SUFFIX: read a GoogleTest run's output on stdin and print one
# unnumbered result line per test case (for tap_number), SUFFIX after each
# name.  A case that started and never finished (the binary crashed or was
# killed in it) is a failure, so a crash cannot pass for a short run.
gtest_results() {
	awk -v suffix="$1" '
		/^\[ RUN      \] / { started[$4] = 1; order[++n] = $4; next }
		/^\[       OK \] / { done[$4] = "ok"; next }
		/^\[  SKIPPED \] [^ ]+\.[^ ]+/ { if (!($4 in done)) done[$4] = "skip"; next }
		/^\[  FAILED  \] [^ ]+\.[^ ]+(,| \()/ { c = $4; sub(/,$/, "", c); done[c] = "fail"; next }
		END {
			for (i = 1; i <= n; i++) {
				c = order[i]
				if (done[c] == "ok") printf "ok %s %s\n", c, suffix
				else if (done[c] == "skip") printf "ok %s %s # SKIP\n", c, suffix
				else if (done[c] == "fail") printf "not ok %s %s\n", c, suffix
				else printf "not ok %s %s # started, never finished (crash or kill)\n", c, suffix
			}
		}'
}
