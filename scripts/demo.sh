#!/usr/bin/env bash
# The demo (`make demo`, which puts .venv/bin on PATH): start the Tencent Cloud CVM API
# emulator with the demo fleet (config/fleet-demo.yaml: two regions, quota 10, five
# instances, two images cvmkeeper does not own), run the sample policies (policies/)
# through one day of hourly slots with `cvmkeeper run --at`, show the images and the
# status, restore db-1 from its newest image as a new instance (`cvmkeeper restore`), then
# print how to run the real daemon against the same emulator.
#
# The emulator makes an image in 0.2 s, so the day takes seconds. Whatever happens, the
# emulator is stopped on exit and nothing is left running; the exit status is 0 only
# when every step worked.
set -euo pipefail
cd "$(dirname "$0")/.."

FLEET=config/fleet-demo.yaml
DAY=2026-11-28              # a Saturday: the weekly policy's slot (Sun 03:30 +08:00) is in it
started=$SECONDS
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

# The user's own settings must not leak in: the demo's config names its credentials, and
# nothing is sent to Sentry.
unset SENTRY_DSN CREDENTIALS_DIRECTORY

mkfifo "$workdir/out"
cvmkeeper emulator --fleet "$FLEET" --port 0 >"$workdir/out" 2>"$workdir/emulator.log" &
emulator_pid=$!
exec 3<"$workdir/out"
if ! read -r -t 30 first_line <&3; then
    echo "demo: the emulator did not start" >&2
    cat "$workdir/emulator.log" >&2
    exit 1
fi
case "$first_line" in
    "listening on http://127.0.0.1:"*) endpoint=${first_line#listening on http://} ;;
    *) echo "demo: unexpected emulator output: $first_line" >&2; exit 1 ;;
esac

# config/demo.yaml as it is, pointed at this emulator's port. Its relative paths
# (../policies, demo-secret-key, ../.demo-state) resolve inside the temporary directory.
mkdir "$workdir/config"
sed "s/127\.0\.0\.1:8765/$endpoint/" config/demo.yaml >"$workdir/config/demo.yaml"
cp config/demo-secret-key "$workdir/config/"
chmod 600 "$workdir/config/demo-secret-key"   # git keeps no file modes; a key file is private
ln -s "$PWD/policies" "$workdir/policies"
export CVMKEEPER_CONFIG="$workdir/config/demo.yaml"

echo "== The Tencent Cloud CVM API emulator serves $FLEET at 127.0.0.1:PORT."
echo "== What the official tencentcloud-sdk-python-cvm sees in it:"
cvmkeeper emulator inventory --endpoint "$endpoint" --fleet "$FLEET"
echo
echo "== The sample policies: web-daily (02:00 Asia/Shanghai, tag backup=daily),"
echo "== db-hourly (every hour, tag backup=hourly), batch-weekly (Sunday 03:30, stop_start)."
echo "== $DAY, hour by hour: cvmkeeper run --no-alerts --at ${DAY}THH:00Z"
echo "== (each run's summary and its 'exists' lines, slots already made, are left out)"
for hour in $(seq -w 0 23); do
    if ! cvmkeeper run --no-alerts --at "${DAY}T${hour}:00Z" >"$workdir/run.out" 2>"$workdir/run.err"; then
        echo "demo: cvmkeeper run --at ${DAY}T${hour}:00Z failed:" >&2
        cat "$workdir/run.out" "$workdir/run.err" >&2
        exit 1
    fi
    sed -e '/^exists /d' -e '/^ok: /d' -e "s/^/${hour}:00  /" "$workdir/run.out"
done
echo
echo "== cvmkeeper images"
cvmkeeper images
echo
echo "== cvmkeeper status --at ${DAY}T23:30Z"
status=0
cvmkeeper status --at "${DAY}T23:30Z" || status=$?
if ((status > 1)); then
    echo "demo: cvmkeeper status failed with exit status $status" >&2
    exit 1
fi
echo "== ('never run': status reads the daemon's state file, and runs by hand do not write it)"
echo
echo "== Restore db-1 from its newest backup as a new instance (the default, --new; db-1 is"
echo "== left alone): cvmkeeper restore ins-7hq3m1zc"
if ! cvmkeeper restore ins-7hq3m1zc --timeout 1m 2>"$workdir/restore.err"; then
    echo "demo: cvmkeeper restore failed:" >&2
    cat "$workdir/restore.err" >&2
    exit 1
fi
echo
echo "== To run the real daemon against the same emulator, in two terminals:"
echo "     cvmkeeper emulator --fleet $FLEET --port 8765"
echo "     cvmkeeper daemon --config config/demo.yaml"
echo "== then look with  cvmkeeper status --config config/demo.yaml  (Ctrl-C stops each)."
echo "== The commands are in .venv/bin: run  source .venv/bin/activate  first."
echo "== Demo done in $((SECONDS - started)) s; the emulator is stopped, nothing is left running."
