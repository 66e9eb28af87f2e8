#!/usr/bin/env bash
# The explorer's peak RSS (VmHWM) in the real window under Xvfb, for the README's Speed and memory table, on the demo
# model with WikiText-2: after opening and importance, through one Run, through Baselines after it, and (a second
# window) with Run, Baselines and Allocate clicked together. Prints MiB and the multiple of the model's f32 weights.
# Takes about 10 minutes. Needs what scripts/screenshot.sh needs. usage: scripts/gui-memory.sh [path/to/nash-swarm]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/nash-swarm}
model=${NASH_SWARM_CACHE:-$HOME/.cache/nash-swarm}/SmolLM2-135M-Instruct.Q4_1.gguf
f32_mib=$((134515008 * 4 / 1048576))   # the demo model's parameters in f32
export DISPLAY=:96 WGPU_BACKEND=vulkan VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
export XDG_DATA_HOME=$(mktemp -d)   # no remembered settings: the seed preset, 4 windows
Xvfb :96 -screen 0 1480x920x24 >/dev/null 2>&1 &
xvfb=$!
app=
trap 'kill $app $xvfb 2>/dev/null || true; rm -rf "$XDG_DATA_HOME"' EXIT
sleep 1

open_window() {
    env -u DBUS_SESSION_BUS_ADDRESS "$bin" gui --model "$model" --text ../shared/data/wikitext-2-raw/wiki.test.raw \
        >/dev/null 2>&1 &
    app=$!
    window=$(xdotool search --sync --onlyvisible --name "Nash" | head -1)
    xdotool windowmove "$window" 0 0 windowsize "$window" 1480 920
    sleep 2
    wait_idle
}
source scripts/wait-idle.sh
click() { xdotool mousemove "$1" "$2" click 1; sleep 1; }
report() {
    local hwm rss anon
    hwm=$(awk '$1=="VmHWM:"{print int($2/1024)}' /proc/$app/status)
    rss=$(awk '$1=="VmRSS:"{print int($2/1024)}' /proc/$app/status)
    anon=$(awk '$1=="RssAnon:"{print int($2/1024)}' /proc/$app/status)
    echo "$1: peak ${hwm} MiB = $(awk "BEGIN {printf \"%.2f\", $hwm / $f32_mib}")x the ${f32_mib} MiB f32 weights;" \
        "then ${rss} MiB resident (${anon} MiB anonymous)"
}

open_window
report "open + importance"
click 26 629        # Run
wait_idle
report "through one Run (quantize + evaluate)"
click 89 629        # Baselines
wait_idle
report "through Baselines after the Run"
kill $app
wait $app 2>/dev/null || true

open_window
click 26 629        # Run, Baselines and Allocate together: they take turns
click 89 629
click 38 551
wait_idle
report "Run, Baselines and Allocate clicked together"
