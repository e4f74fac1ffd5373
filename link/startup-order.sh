#!/usr/bin/env bash
# Regenerates link/startup-order.txt: every function of the release binary that `firebell serve`
# runs from start to ready, while idle, and answering /readyz, /healthz, /metrics and the console
# page, found by running it under valgrind's callgrind (which counts every function executed).
# build.rs hands the list to the linker (`--symbol-ordering-file`), which puts those functions
# first in `.text`, so the code a running bot touches sits in a few MB instead of being spread
# over all 21 MB. A stale list is harmless: names no longer in the binary are skipped, new
# functions are placed after the listed ones. Rerun after a toolchain or dependency update
# (symbol names carry hashes of both) and after changing code that start-up or an idle bot runs
# (new functions, renumbered closures; a day of store changes cost 3 MiB of idle RSS):
#
#   link/startup-order.sh
#
# Needs valgrind and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cargo build --release --bin firebell
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
sed -e "s/listen = \"127.0.0.1:8080\"/listen = \"127.0.0.1:$port\"/" firebell.example.toml >"$work/firebell.toml"
ln -s "$root/commands" "$work/commands"
cp target/release/firebell "$work/firebell"
(cd "$work" && valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.out" \
    "$work/firebell" serve >"$work/serve.log" 2>&1) &
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done
for path in /readyz /healthz /metrics / /readyz; do
    curl -sf -o /dev/null "http://127.0.0.1:$port$path" || { echo "GET $path failed"; cat "$work/serve.log"; exit 1; }
done
sleep 6 # the idle loops: timers, outbox, WAL checkpointer
pkill -TERM -f "$work/firebell serve" || true
wait
# callgrind names each object (ob=) and function (fn=) once with a number, then by number.
awk '
    /^ob=/ { s = substr($0, 4); id = s; sub(/ .*/, "", id); name = s
             if (sub(/^\([0-9]+\) /, "", name)) objects[id] = name
             current = objects[id]; next }
    /^cob=/ { s = substr($0, 5); id = s; sub(/ .*/, "", id); name = s
              if (sub(/^\([0-9]+\) /, "", name)) objects[id] = name; next }
    /^c?fn=/ { own = ($0 ~ /^fn=/); s = $0; sub(/^c?fn=/, "", s); id = s; sub(/ .*/, "", id); name = s
               if (sub(/^\([0-9]+\) /, "", name)) functions[id] = name
               if (own && current ~ /\/firebell$/) used[functions[id]] = 1; next }
    END { for (name in used) print name }
' "$work/callgrind.out" | LC_ALL=C sort >link/startup-order.txt
echo "link/startup-order.txt: $(wc -l <link/startup-order.txt) functions"
