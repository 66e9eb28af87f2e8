#!/usr/bin/env bash
# Screenshots of the real window under Xvfb, for the README: the explorer on the demo model as it opens
# (screenshots/heatmap.png) and with the Export GGUF menu open (screenshots/export-gguf.png).
# Needs: apt-get install xvfb x11-apps imagemagick xdotool mesa-vulkan-drivers libvulkan1; the demo model
# (`cargo run -- fetch-demo`). usage: scripts/screenshot.sh [path/to/nash-swarm]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/nash-swarm}
export DISPLAY=:99 WGPU_BACKEND=vulkan VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
Xvfb :99 -screen 0 1480x920x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep 1
"$bin" gui --model ~/.cache/nash-swarm/SmolLM2-135M-Instruct.Q4_1.gguf \
    --text ../shared/data/wikitext-2-raw/wiki.test.raw >/dev/null 2>&1 &
app=$!
sleep "${SETTLE_SECONDS:-25}"
window=$(xdotool search --sync --onlyvisible --name "Nash" | head -1)
xdotool windowmove "$window" 0 0 windowsize "$window" 1480 920
sleep 2
xwd -root -silent | convert xwd:- -crop 1480x920+0+0 png:screenshots/heatmap.png
xdotool mousemove 855 12 click 1
sleep 2
xwd -root -silent | convert xwd:- -crop 1480x920+0+0 png:screenshots/export-gguf.png
