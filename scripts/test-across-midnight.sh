#!/usr/bin/env bash
# The time-sensitive suites, run with the wall clock at the two moments when "today" in UTC and the
# maintenance night disagree:
#   - 00:20 UTC, maintenance zone UTC: the window opened yesterday, so tonight is yesterday's date;
#   - 23:50 in America/Los_Angeles: the night is the zone's date while UTC is already on the next day.
# A test that names a night or an audit day by the UTC date fails at one of them. libfaketime shifts
# the wall clock of every process of the run by one offset (the children inherit it, so the CLI, the
# watchdog and the simulated vLLM agree) and leaves the monotonic clock alone, so timers run true.
#
# Usage: scripts/test-across-midnight.sh        (needs Debian's faketime: apt-get install faketime)
set -euo pipefail
cd "$(dirname "$0")/.."

lib=$(find /usr/lib /usr/local/lib -name libfaketime.so.1 2>/dev/null | head -n 1 || true)
if [ -z "$lib" ]; then
  echo "test-across-midnight: libfaketime is not installed; install it with: apt-get install faketime" >&2
  exit 2
fi

# package folder, then its time-sensitive test files
suites=(
  "apps/cli src/commands/demo.int.test.ts src/commands/evaluate.int.test.ts src/commands/doctor.test.ts"
  "apps/daemon src/daemon.int.test.ts"
  "packages/spica-evaluator src/spica.int.test.ts"
)

# zone, then an instant (epoch seconds) at that wall-clock time in that zone, within a day of now
moments=(
  "UTC $(TZ=UTC date -d 'tomorrow 00:20' +%s)"
  "America/Los_Angeles $(TZ=America/Los_Angeles date -d 'today 23:50' +%s)"
)
# Without the system's zone data `date` reads America/Los_Angeles as UTC, and the second moment
# would quietly test nothing that the first does not.
if [ "$(TZ=America/Los_Angeles date -d '2026-01-15 12:00' +%z)" != "-0800" ]; then
  echo "test-across-midnight: the system's time-zone data is missing; install it with: apt-get install tzdata" >&2
  exit 2
fi

status=0
for moment in "${moments[@]}"; do
  read -r zone target <<<"$moment"
  echo "== clock at $(TZ=$zone date -d "@$target" '+%F %H:%M %Z') ($(date -u -d "@$target" '+%F %H:%M UTC')), maintenance zone $zone"
  for suite in "${suites[@]}"; do
    read -r dir files <<<"$suite"
    # Each suite starts at the moment itself, however long the ones before it took.
    printf -v shift '%+d' $((target - $(date +%s)))
    run_env=(env "LD_PRELOAD=$lib${LD_PRELOAD:+:$LD_PRELOAD}" "FAKETIME=$shift" FAKETIME_DONT_FAKE_MONOTONIC=1 "GPU_CANARY_SIM_TZ=$zone")
    # The shift must really apply: a preload that fails to load only warns, and the suites would pass at today's hour.
    seen=$("${run_env[@]}" node -e 'process.stdout.write(String(Math.round(Date.now() / 1000)))')
    if [ $((seen - target)) -lt -5 ] || [ $((seen - target)) -gt 60 ]; then
      echo "test-across-midnight: the clock did not move to $(date -u -d "@$target" +%FT%TZ) (node saw $(date -u -d "@$seen" +%FT%TZ))" >&2
      exit 1
    fi
    # shellcheck disable=SC2086 # the file list splits on purpose
    if ! (cd "$dir" && "${run_env[@]}" pnpm exec vitest run $files); then
      echo "test-across-midnight: $dir failed with the clock at $(date -u -d "@$target" +%FT%TZ) (zone $zone)" >&2
      status=1
    fi
  done
done
exit "$status"
