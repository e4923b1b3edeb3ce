#!/bin/sh
# Runs inside the test VM (busybox sh): run-kselftests.sh SECS TEST...
# Runs each kselftest binary from /bin with a hard time limit of SECS,
# echoes its TAP output indented with '# ', and prints one TAP line per
# binary.  scripts/vm-selftests flattens the nested results.
limit=$1
shift
echo "TAP version 13"
echo "1..$#"
n=0
for t in "$@"; do
	n=$((n + 1))
	echo "# selftest: $t"
	start=$(date +%s)
	timeout -s KILL "$limit" "/bin/$t" >/tmp/ksft.out 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	sed 's/^/# /' /tmp/ksft.out
	case $rc in
	0) echo "ok $n $t # ${secs}s" ;;
	4) echo "ok $n $t # SKIP" ;;
	137) echo "not ok $n $t # TIMEOUT after ${limit}s" ;;
	*) echo "not ok $n $t # exit=$rc after ${secs}s" ;;
	esac
done
