#!/usr/bin/env bash
# demo: from a built tree to a running sandbox.  Imports Debian's cloud
# kernel (through apt) and builds the `tiny` image the first time, starts a
# bangerd under a private root (./.demo), applies examples/sandboxes/tiny.yaml
# and shows it Running with its serial console.  DRIVER=fake runs the
# control loop alone (no guest), with the other examples.
# Leaves the daemon running; prints how to look around and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BANGER_ROOT:-$PWD/.demo}
driver=${DRIVER:-auto}
bin=$PWD/build/bin
banger() { "$bin/banger" --root "$root" "$@"; }
mkdir -p "$root"

if [ "$driver" != fake ]; then
        banger kernel list -o json | grep -q '"name": *"default"' ||
                banger kernel import default --apt
        banger image list -o json | grep -q '"name": *"tiny"' ||
                banger image build tiny
fi

if banger version 2>/dev/null | grep -q '^daemon: [0-9]'; then
        echo "demo: reusing the bangerd already serving $root"
else
        "$bin/bangerd" --root "$root" --driver "$driver" --foreground >"$root/bangerd.log" 2>&1 &
        echo $! >"$root/bangerd.pid"
        for _ in $(seq 100); do [ -S "$root/run/bangerd.sock" ] && break; sleep 0.05; done
        echo "demo: bangerd (driver $driver) pid $(cat "$root/bangerd.pid"), root $root, log $root/bangerd.log"
fi

if [ "$driver" = fake ]; then
        banger apply -f examples/sandboxes/minimal.yaml -f examples/sandboxes/fleet.yaml -f examples/sandboxes/stopped.yaml
        banger get
else
        banger apply --timeout 300 -f examples/sandboxes/tiny.yaml
        banger get
        echo; echo "demo: the guest's serial console (last lines):"
        for _ in $(seq 60); do banger vm logs demo | grep -q 'login\|ready\|dropbear' && break; sleep 1; done
        banger vm logs demo | tail -n 15
        echo; echo "demo: banger vm run --rm --image tiny -- uname -a   (a second sandbox, over SSH, then deleted)"
        banger vm run --rm --name demo-run --image tiny -- uname -a
fi
cat <<MSG

Try:
  $bin/banger --root $root get -o yaml
  $bin/banger --root $root vm logs demo -f
  $bin/banger --root $root doctor
  $bin/banger --root $root vm ssh demo
  $bin/banger --root $root vm run --image tiny --rm ./some-git-repo -- ls
  edit or drop files in $root/config/sandboxes/ and watch: $bin/banger --root $root get -w
Stop the daemon (sandboxes keep running): kill \$(cat $root/bangerd.pid)
MSG
