# Sourced by the scripts that drive the real window: waits until the process $app has used (almost) no CPU for
# 3 s, that is until every job it started has ended.
wait_idle() {
    local before after
    while true; do
        before=$(awk '{print $14 + $15}' /proc/$app/stat)
        sleep 3
        after=$(awk '{print $14 + $15}' /proc/$app/stat)
        [ $((after - before)) -lt 10 ] && return
    done
}
