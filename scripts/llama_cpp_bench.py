#!/usr/bin/env python3
"""Forward-pass throughput of llama.cpp (llama-cpp-python) on a GGUF, for `nash-swarm bench --llama-cpp`.

Evaluates the same kind of windows as our bench: consecutive `ctx`-token windows of the text, one `eval` each
from an empty KV cache, 2 threads. Prints one JSON object: throughput, and the process's peak RSS with the
interpreter's own RSS before llama.cpp loaded the model. Needs `pip install llama-cpp-python==0.3.36`.
"""
import argparse
import json
import sys
import time


def peak_rss_bytes() -> int:
    # VmHWM, not getrusage's ru_maxrss: that one keeps the peak of the process before exec (our bench).
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        from llama_cpp import Llama
    except ImportError:
        print(json.dumps({"error": "llama_cpp is not installed (pip install llama-cpp-python==0.3.36)"}))
        return 2
    before_model = peak_rss_bytes()
    llm = Llama(model_path=args.model, n_ctx=args.ctx, n_batch=args.ctx, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)
    with open(args.text, encoding="utf-8") as f:
        tokens = llm.tokenize(f.read().encode("utf-8"), add_bos=False)
    windows = [tokens[i * args.ctx:(i + 1) * args.ctx] for i in range(args.windows + 1)]
    llm.reset()
    llm.eval(windows[0])  # warm-up, as our bench does
    start = time.perf_counter()
    for window in windows[1:]:
        llm.reset()
        llm.eval(window)
    seconds = time.perf_counter() - start
    n = sum(len(w) for w in windows[1:])
    print(json.dumps({"tokens": n, "seconds": seconds, "tokens_per_second": n / seconds,
                      "peak_rss_bytes": peak_rss_bytes(), "rss_before_model_bytes": before_model}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
