#!/usr/bin/env bash
# The demo: start the CVM API emulator with a sample fleet, then show what the official
# Tencent Cloud SDK sees in it. Run by `make demo` with .venv/bin on PATH. Whatever
# happens, the emulator is stopped on exit and nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

FLEET=config/fleet-demo.yaml
workdir=$(mktemp -d)
emulator_pid=""

cleanup() {
    if [[ -n "$emulator_pid" ]] && kill -0 "$emulator_pid" 2>/dev/null; then
        kill -TERM "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkfifo "$workdir/out"
cvmkeeper emulator --fleet "$FLEET" --port 0 >"$workdir/out" &
emulator_pid=$!
exec 3<"$workdir/out"
if ! read -r -t 20 first_line <&3; then
    echo "demo: the emulator did not start" >&2
    exit 1
fi
case "$first_line" in
    "listening on http://127.0.0.1:"*) endpoint=${first_line#listening on http://} ;;
    *) echo "demo: unexpected emulator output: $first_line" >&2; exit 1 ;;
esac

echo "== Tencent Cloud CVM emulator at $endpoint (fleet: $FLEET)"
echo "== Inventory as the official tencentcloud-sdk-python-cvm reads it:"
cvmkeeper emulator inventory --endpoint "$endpoint" --fleet "$FLEET"
