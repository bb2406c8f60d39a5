#!/usr/bin/env bash
# demo: start a bangerd (fake driver: real VMs land with issue 4) under a
# private root, apply the example sandboxes, and show them converge.
# Leaves the daemon running; prints how to look around and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BANGER_ROOT:-$PWD/.demo}
bin=$PWD/build/bin
mkdir -p "$root"
if "$bin/banger" --root "$root" version 2>/dev/null | grep -q '^daemon: [0-9]'; then
        echo "demo: reusing the bangerd already serving $root"
else
        "$bin/bangerd" --root "$root" --driver fake --foreground >"$root/bangerd.log" 2>&1 &
        echo $! >"$root/bangerd.pid"
        for _ in $(seq 100); do [ -S "$root/run/bangerd.sock" ] && break; sleep 0.05; done
        echo "demo: bangerd (fake driver) pid $(cat "$root/bangerd.pid"), root $root, log $root/bangerd.log"
fi
"$bin/banger" --root "$root" apply -f examples/sandboxes/minimal.yaml -f examples/sandboxes/fleet.yaml -f examples/sandboxes/stopped.yaml
"$bin/banger" --root "$root" get
cat <<MSG

Try:
  $bin/banger --root $root get api -o yaml
  $bin/banger --root $root events
  edit or drop files in $root/config/sandboxes/ and watch: $bin/banger --root $root get -w
Stop the daemon (sandboxes stay as they are): kill \$(cat $root/bangerd.pid)
MSG
