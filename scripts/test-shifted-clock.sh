#!/usr/bin/env bash
# `make test-clock`: the suite's verdict must not depend on the wall clock, so run the tests
# that read the real clock under libfaketime at instants chosen to break such assumptions.
#
# libfaketime (the PyPI package bundles the C library) is preloaded with LD_PRELOAD, so
# every process the tests start (the daemon, the emulator, `make demo`'s commands, bash,
# date) sees the same shifted clock. The shift is an offset ("+N seconds"), so time still
# runs, and it runs the same in every process; the monotonic clock is left real, so
# timeouts keep their length.
#
#   scripts/test-shifted-clock.sh                      every instant, the wall-clock tests
#   scripts/test-shifted-clock.sh 2026-12-31T23:58:00Z one instant, the wall-clock tests
#   CLOCK_TESTS=tests scripts/test-shifted-clock.sh 2026-12-04T08:59:30Z   the whole suite
#
# The wall-clock tests are those marked `wallclock` (tests/conftest.py says which). Extra
# arguments after `--` go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
CLOCK_TESTS=${CLOCK_TESTS:-}

# Each instant names what it is there to break.
DEFAULT_INSTANTS=(
    "2026-12-04T08:15:00Z"   # morning UTC: web-daily's 02:00 Shanghai slot is 14 hours old
    "2026-12-04T19:40:00Z"   # evening UTC: the slot is 1 hour 40 minutes old
    "2026-12-04T13:59:00Z"   # one minute before an hour boundary: a test crosses it
    "2027-03-28T00:59:00Z"   # Europe's spring-forward hour (01:00 UTC): Berlin 01:59 -> 03:00
    "2026-12-31T23:58:00Z"   # two minutes before New Year: day, month, year and ISO week change
)

instants=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
    instants+=("$1")
    shift
done
[[ $# -gt 0 ]] && shift  # the "--"
pytest_args=(-p no:cacheprovider "$@")
[[ ${#instants[@]} -gt 0 ]] || instants=("${DEFAULT_INSTANTS[@]}")

lib_dir=$("$PYTHON" -c 'import libfaketime, pathlib; print(pathlib.Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src")')
if [[ ! -f "$lib_dir/libfaketime.so.1" ]]; then
    echo "test-clock: libfaketime.so.1 not found in $lib_dir (pip install libfaketime)" >&2
    exit 2
fi

if [[ -n "$CLOCK_TESTS" ]]; then
    selection=("$CLOCK_TESTS")
else
    selection=(-m wallclock)
fi

failed=()
for instant in "${instants[@]}"; do
    target=$(date -u -d "$instant" +%s)
    offset=$((target - $(date -u +%s)))
    echo "== test-clock: the clock at $instant (offset ${offset}s): pytest ${selection[*]}"
    # A quick proof that the shift reaches a child process before the tests rely on it.
    seen=$(LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        LD_PRELOAD=libfaketime.so.1 FAKETIME="+${offset}s" DONT_FAKE_MONOTONIC=1 \
        FAKETIME_NO_CACHE=1 date -u +%Y-%m-%dT%H:%M)
    if [[ "$seen" != "${instant:0:16}" ]]; then
        echo "test-clock: a child process saw $seen, not ${instant:0:16}: libfaketime is not working" >&2
        exit 2
    fi
    if ! LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        LD_PRELOAD=libfaketime.so.1 FAKETIME="+${offset}s" DONT_FAKE_MONOTONIC=1 \
        FAKETIME_NO_CACHE=1 CVMKEEPER_SHIFTED_CLOCK="$instant" \
        "$PYTHON" -m pytest "${selection[@]}" "${pytest_args[@]}"; then
        failed+=("$instant")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "test-clock: FAILED at ${failed[*]}" >&2
    exit 1
fi
echo "test-clock: passed at ${#instants[@]} instant(s): ${instants[*]}"
