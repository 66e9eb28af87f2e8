#!/usr/bin/env bash
# The explorer opening a large model under Xvfb, for the README (screenshots/importance-streaming.png): the random
# Llama-3.2-1B-shaped model `bench --synthetic 1b --layers 16` writes into the cache, screenshot 22 s in, while
# importance still runs; prints the peak anonymous RSS seen (sampled every 0.5 s).
# Needs what scripts/screenshot.sh needs. usage: scripts/screenshot-streaming.sh [path/to/nash-swarm]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/nash-swarm}
model=${NASH_SWARM_CACHE:-$HOME/.cache/nash-swarm}/synthetic/llama-1b-16-layers
[ -d "$model" ] || "$bin" bench --synthetic 1b --layers 16 --windows 1
export DISPLAY=:98 WGPU_BACKEND=vulkan VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
Xvfb :98 -screen 0 1480x920x24 >/dev/null 2>&1 &
xvfb=$!
sleep 1
"$bin" gui --model "$model" >/dev/null 2>&1 &
app=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
peak=0
for i in $(seq 1 160); do
    anon=$(awk '$1=="RssAnon:"{print int($2/1024)}' /proc/$app/status)
    [ "$anon" -gt "$peak" ] && peak=$anon
    if [ "$i" = 44 ]; then
        window=$(xdotool search --onlyvisible --name "Nash" | head -1)
        xdotool windowmove "$window" 0 0 windowsize "$window" 1480 920
        sleep 1
        xwd -root -silent | convert xwd:- -crop 1480x920+0+0 png:screenshots/importance-streaming.png
    fi
    sleep 0.5
done
echo "peak RssAnon ${peak} MiB"
