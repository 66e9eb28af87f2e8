#!/usr/bin/env python3
"""Our GGUF exports run in llama.cpp, score as we score them, and compare with llama-quantize's own files.

llama.cpp is llama-cpp-python 0.3.36's vendored copy built with cmake (see the README): the tools in BIN_DIR
(llama-quantize, llama-imatrix) and the Python package run from its source tree over the shared libraries of that
build (PYTHONPATH=<sdist> LLAMA_CPP_LIB_PATH=BIN_DIR), so nothing is built twice.

For each preset: llama-quantize makes its file from the F32 weights (with an imatrix from the calibration text
when --calib is given), `nash-swarm quantize --preset P --format gguf` makes ours from the same F32 weights and
calibration text. Both are scored by llama.cpp (full windows of --ctx tokens, every token but the first, KLD
against the F32 model) and ours by `nash-swarm eval` on the same windows. Also checked: the per-tensor types of
the two files are the same (the preset rules), and how many tokens of llama.cpp's greedy continuation of a prompt
on our file `nash-swarm generate` reproduces (llama.cpp rounds activations to 8 bits inside its quantized
products, so a near-tie can go the other way) and, given our continuation as the prefix, the margin in llama.cpp's
own logits at the first step where its argmax differs from ours. Prints a markdown table and one JSON line per file.

With --targets X,Y (and --calib), `nash-swarm quantize --target-bpw X --calib-text` files (the Nash allocation
over block types, priced by measured sensitivity) are scored the same way, as rows "nash@X" beside the presets.

usage: gguf_vs_llama_cpp.py --demo DEMO.gguf --bin BIN_DIR --sdist SDIST_DIR --text wiki.test.raw
                            --nash target/debug/nash-swarm [--calib] [--presets q4_k_m,q4_0] [--targets 5.349]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

PRESETS = ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "iq4_nl", "q3_k_m", "q2_k"]
PROMPT = "The capital of France is"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def tensor_types(path):
    from gguf import GGUFReader
    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def tensor_bpw(path):
    from gguf import GGUFReader
    tensors = GGUFReader(path).tensors
    params = sum(int(t.n_elements) for t in tensors)
    return sum(int(t.n_bytes) for t in tensors) * 8 / params, os.path.getsize(path) * 8 / params


class LlamaCpp:
    """llama.cpp's own forward pass through llama-cpp-python, on full windows."""

    def __init__(self, path, ctx):
        from llama_cpp import Llama
        self.llm = Llama(model_path=path, n_ctx=max(ctx, 128), n_batch=ctx, n_ubatch=ctx, logits_all=True,
                         n_threads=2, verbose=False)

    def tokenize(self, text):
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def log_probs(self, window):
        self.llm.reset()
        self.llm.eval(window)
        logits = np.array(self.llm.scores[: len(window) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def first_disagreement_margin(self, prompt_ids, ids):
        """Given our continuation as the prefix, the first step where llama.cpp's argmax differs from ours, and
        by how much (its logit of its own pick minus its logit of ours); None when it agrees with every step."""
        self.llm.reset()
        self.llm.eval(prompt_ids + ids)
        for i, token in enumerate(ids):
            row = np.array(self.llm.scores[len(prompt_ids) + i - 1])
            if int(row.argmax()) != token:
                return float(row.max() - row[token])
        return None

    def greedy(self, prompt_ids, n):
        self.llm.reset()
        out = []
        for token in self.llm.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
            out.append(token)
            if len(out) == n:
                break
        return out


def score(model, windows, reference=None):
    nll, per_token, agree, n = 0.0, [], 0, 0
    for w, window in enumerate(windows):
        lp = model.log_probs(window)
        targets = np.array(window[1:])
        nll -= lp[np.arange(len(targets)), targets].sum()
        n += len(targets)
        if reference is not None:
            ref = reference[w]
            per_token.append((np.exp(ref) * (ref - lp)).sum(axis=1))
            agree += int((ref.argmax(axis=1) == lp.argmax(axis=1)).sum())
    out = {"ppl": math.exp(nll / n), "tokens": n}
    if reference is not None:
        per_token = np.concatenate(per_token)
        out["kld"] = float(per_token.mean())
        out["kld_p99"] = float(np.percentile(per_token, 99))
        out["top1"] = agree / n
    return out


def ours_eval(nash, path, text, ctx, windows, reference):
    cmd = [nash, "eval", "--model", path, "--text", text, "--ctx", str(ctx), "--max-windows", str(windows), "--json"]
    if reference:
        cmd += ["--reference", reference]
    return json.loads(run(cmd).stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--demo", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--sdist", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--nash", required=True)
    p.add_argument("--calib", action="store_true", help="calibrate both on the last 300 KB of the text")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--keep", help="keep the files in this folder")
    p.add_argument("--targets", default="", help="also Nash allocations at these tensor bpw (needs --calib)")
    p.add_argument("--packed", action="store_true",
                   help="with --targets, also our packed format at each target, scored by our eval only")
    p.add_argument("--no-imatrix-too", action="store_true",
                   help="with --calib, also llama-quantize's file made without the imatrix")
    args = p.parse_args()
    sys.path.insert(0, args.sdist)
    os.environ["LLAMA_CPP_LIB_PATH"] = os.path.abspath(args.bin)
    tmp = args.keep or tempfile.mkdtemp()
    os.makedirs(tmp, exist_ok=True)
    f32 = os.path.join(tmp, "f32.gguf")
    if not os.path.exists(f32):
        run([os.path.join(args.bin, "llama-quantize"), "--allow-requantize", args.demo, f32, "F32"])
    calib = None
    imatrix = None
    if args.calib:
        data = open(args.text, "rb").read()
        calib = os.path.join(tmp, "calib.txt")
        open(calib, "wb").write(data[-300_000:])
        imatrix = os.path.join(tmp, "imatrix.gguf")
        if not os.path.exists(imatrix):
            run([os.path.join(args.bin, "llama-imatrix"), "-m", f32, "-f", calib, "-o", imatrix, "-c", "512", "-t", "2"])

    text = open(args.text, encoding="utf-8").read()
    base = LlamaCpp(f32, args.ctx)
    tokens = base.tokenize(text)
    windows = [tokens[i * args.ctx:(i + 1) * args.ctx] for i in range(args.windows)]
    reference = [base.log_probs(w) for w in windows]
    base_score = score(base, windows)
    print(json.dumps({"file": "f32", **base_score}), flush=True)
    del base

    rows = []
    jobs = [("preset", p) for p in args.presets.split(",") if p] + [("nash", t) for t in args.targets.split(",") if t]
    for kind, preset in jobs:
        ours = os.path.join(tmp, f"ours-{preset}.gguf")
        if kind == "nash":
            if not calib:
                sys.exit("--targets needs --calib")
            run([args.nash, "quantize", "--model", f32, "--target-bpw", preset, "--calib-text", calib, "--out", ours])
            files, same_types, preset = [("ours", ours)], None, f"nash@{preset}"
        else:
            theirs = os.path.join(tmp, f"llama-{preset}.gguf")
            cmd = [os.path.join(args.bin, "llama-quantize")]
            if imatrix:
                cmd += ["--imatrix", imatrix]
            run(cmd + [f32, theirs, preset.upper()])
            cmd = [args.nash, "quantize", "--model", f32, "--preset", preset, "--out", ours, "--json"]
            if calib:
                cmd += ["--calib-text", calib]
            run(cmd)
            same_types = tensor_types(ours) == tensor_types(theirs)
            files = [("llama.cpp", theirs), ("ours", ours)]
            if imatrix and args.no_imatrix_too:
                plain = os.path.join(tmp, f"llama-{preset}-no-imatrix.gguf")
                run([os.path.join(args.bin, "llama-quantize"), f32, plain, preset.upper()])
                files.insert(1, ("llama.cpp, no imatrix", plain))
        for who, path in files:
            llama = LlamaCpp(path, args.ctx)
            row = {"preset": preset, "made_by": who, "same_types": same_types}
            row["tensor_bpw"], row["file_bpw"] = tensor_bpw(path)
            row["llama_cpp"] = score(llama, windows, reference)
            ours_score = ours_eval(args.nash, path, args.text, args.ctx, args.windows, f32)
            row["nash_eval"] = {k: ours_score.get(k) for k in ["ppl", "kld_mean", "kld_p99", "top1_agreement"]}
            row["ppl_gap"] = ours_score["ppl"] / row["llama_cpp"]["ppl"] - 1
            if who == "ours":
                prompt = llama.tokenize(PROMPT)
                theirs_ids = llama.greedy(prompt, 24)
                gen = json.loads(run([args.nash, "generate", "--model", path, "--prompt", PROMPT, "--tokens", "24",
                                      "--json"]).stdout)
                row["same_greedy"] = gen["ids"] == theirs_ids and gen["prompt_ids"] == prompt
                agree = 0
                while agree < min(len(gen["ids"]), len(theirs_ids)) and gen["ids"][agree] == theirs_ids[agree]:
                    agree += 1
                row["greedy_tokens_agreeing"] = agree
                row["tie_margin"] = llama.first_disagreement_margin(gen["prompt_ids"], gen["ids"])
                row["greedy"] = gen["text"]
                row["greedy_llama_cpp"] = llama.llm.detokenize(theirs_ids).decode("utf-8", "replace")
            del llama
            print(json.dumps(row), flush=True)
            rows.append(row)
        if kind == "nash" and args.packed:
            packed = os.path.join(tmp, f"ours-{preset}-packed")
            target = preset.split("@")[1]
            made = json.loads(run([args.nash, "quantize", "--model", f32, "--target-bpw", target, "--calib-text", calib,
                                   "--out", packed, "--json"]).stdout)
            ours_score = ours_eval(args.nash, packed, args.text, args.ctx, args.windows, f32)
            row = {"preset": preset, "made_by": "ours, packed", "true_bpw": made.get("true_bpw"),
                   "nash_eval": {k: ours_score.get(k) for k in ["ppl", "kld_mean", "kld_p99", "top1_agreement"]}}
            print(json.dumps(row), flush=True)
            rows.append(row)

    print()
    print(f"unquantized (F32): llama.cpp PPL {base_score['ppl']:.2f}")
    print("| preset | made by | tensor bpw | file bpw | PPL (llama.cpp) | KLD mean / p99 (llama.cpp) | top-1 | PPL (our eval) | KLD mean / p99 (our eval) | top-1 (our eval) | gap | same types | greedy tokens equal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e = r["nash_eval"]
        ours = f"{e['ppl']:.2f} | {e['kld_mean']:.4f} / {e['kld_p99']:.3f} | {100 * e['top1_agreement']:.1f}%"
        if "llama_cpp" not in r:  # our packed format: our eval only
            print(f"| {r['preset']} | {r['made_by']} | {r.get('true_bpw') or 0:.3f} (true) | - | - | - | - | {ours} | - | - | - |")
            continue
        l = r["llama_cpp"]
        greedy = "" if "same_greedy" not in r else f"{r['greedy_tokens_agreeing']}/24"
        if r.get("tie_margin") is not None:
            greedy += f" (near-tie: {r['tie_margin']:.4f})"
        print(f"| {r['preset']} | {r['made_by']} | {r['tensor_bpw']:.3f} | {r['file_bpw']:.3f} | {l['ppl']:.2f} | "
              f"{l['kld']:.4f} / {l['kld_p99']:.3f} | {100 * l['top1']:.1f}% | {ours} | {100 * r['ppl_gap']:+.2f}% | "
              f"{ {True: 'yes', False: 'NO', None: '-'}[r['same_types']] } | {greedy} |")

if __name__ == "__main__":
    main()
