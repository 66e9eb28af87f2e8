#!/usr/bin/env bash
# Screenshots of the real window under Xvfb, for the README, on the demo model with WikiText-2: as it opens
# (heatmap.png), the Export menu (export-gguf.png), the explorer's own file picker, which opens because Xvfb has no
# desktop portal (file-picker.png), after a Run and Allocate with the budget moved (nash-allocation.png), the
# allocation's held-out pairs (sensitivity.png), after the allocated Run and Baselines (results.png), and the same at
# 1280x720 (small-window.png). Takes about 20 minutes (Allocate prices 211 tensors, Baselines makes 21 rows).
# Needs: apt-get install xvfb x11-apps imagemagick xdotool mesa-vulkan-drivers libvulkan1; the demo model
# (`cargo run -- fetch-demo`). usage: scripts/screenshot.sh [path/to/nash-swarm]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/nash-swarm}
export DISPLAY=:99 WGPU_BACKEND=vulkan VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
# A fresh settings folder, so remembered settings do not change the pictures.
export XDG_DATA_HOME=$(mktemp -d)
Xvfb :99 -screen 0 1480x920x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true; rm -rf "$XDG_DATA_HOME"' EXIT
sleep 1
env -u DBUS_SESSION_BUS_ADDRESS "$bin" gui --model ~/.cache/nash-swarm/SmolLM2-135M-Instruct.Q4_1.gguf \
    --text ../shared/data/wikitext-2-raw/wiki.test.raw >/dev/null 2>&1 &
app=$!

shot() { xwd -root -silent | convert xwd:- -crop "${2:-1480x920}+0+0" "png:screenshots/$1"; }
source scripts/wait-idle.sh
click() { xdotool mousemove "$1" "$2" click 1; sleep "${3:-1}"; }

sleep 5
window=$(xdotool search --sync --onlyvisible --name "Nash" | head -1)
xdotool windowmove "$window" 0 0 windowsize "$window" 1480 920
xdotool mousemove 1470 910   # out of the way: no hover label in the picture
wait_idle
shot heatmap.png
click 90 12
xdotool mousemove 130 62
sleep 1
shot export-gguf.png
xdotool key Escape
click 740 470
xdotool windowfocus "$window" key --window "$window" ctrl+o
sleep 2
shot file-picker.png
xdotool key Escape
sleep 1
run() { click 740 470; xdotool windowfocus "$window" key --window "$window" ctrl+r; }
run                 # the settings as they open (the seed preset)
wait_idle
click 39 550        # Allocate at 4.50 bpw, priced by measured ΔKLD on the text's end
wait_idle
# A lower budget typed into the slider's value (lower on the panel now: the allocation's box sits above it):
# the allocation is solved again at once.
click 148 615
xdotool key --window "$window" ctrl+a type --window "$window" "3.4"
xdotool key --window "$window" Return
xdotool mousemove 150 800   # an empty spot: no hover label
sleep 2
shot nash-allocation.png
click 1243 630 2    # the Sensitivity tab
shot sensitivity.png
click 1170 630      # back to Pareto
run                 # the allocation
wait_idle
click 89 717        # Baselines
wait_idle
shot results.png
xdotool windowsize "$window" 1280 720
sleep 2
shot small-window.png 1280x720
