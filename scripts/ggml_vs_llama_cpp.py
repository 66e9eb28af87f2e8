#!/usr/bin/env python3
"""Measures llama.cpp's own block encoders on a real SmolLM2 tensor, for the known values in tests/ggml_llama_cpp.rs.

llama-quantize (llama-cpp-python 0.3.36's vendored llama.cpp, built with cmake: see the README) requantizes the
demo GGUF to F32, then to each block type with --pure, once without an importance matrix and once with a synthetic
one (importance of column c = 1 + (37 c mod 64) / 8, exact in f32, written in llama.cpp's imatrix GGUF format).
For each type it prints the SHA-256 of the encoded `blk.0.ffn_down.weight` (1536 columns: every type fits) and
`blk.0.ffn_gate.weight` (576 columns: the 32-weight types), and the importance-weighted relative error
sum imp (w - q)^2 / sum imp w^2 of the decoded tensor (decoded by the gguf package).

usage: ggml_vs_llama_cpp.py DEMO.gguf LLAMA_BIN_DIR
"""

import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFWriter, quants, GGMLQuantizationType as T

TYPES = ["Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "IQ4_NL", "Q3_K", "Q2_K"]
TENSORS = ["blk.0.ffn_down.weight", "blk.0.ffn_gate.weight"]


def importance(cols):
    return np.array([1 + ((37 * c) % 64) / 8 for c in range(cols)], dtype=np.float32)


def tensors(path):
    return {t.name: t for t in GGUFReader(path).tensors}


def write_imatrix(path, f32_tensors):
    w = GGUFWriter(path, arch="imatrix")
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", 1)
    w.add_uint32("imatrix.chunk_size", 512)
    for name, t in f32_tensors.items():
        if len(t.shape) == 2 and name.startswith("blk."):
            cols = int(t.shape[0])
            w.add_tensor(name + ".in_sum2", importance(cols).reshape(1, cols))
            w.add_tensor(name + ".counts", np.ones((1, 1), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(bin_dir, src, dst, ty, imatrix=None):
    cmd = [os.path.join(bin_dir, "llama-quantize"), "--pure"]
    if imatrix:
        cmd += ["--imatrix", imatrix]
    subprocess.run(cmd + [src, dst, ty], check=True, capture_output=True)


def main():
    demo, bin_dir = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "f32.gguf")
        subprocess.run([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", demo, f32, "F32"],
                       check=True, capture_output=True)
        source = tensors(f32)
        imatrix = os.path.join(tmp, "imatrix.gguf")
        write_imatrix(imatrix, source)
        for weighted in (False, True):
            for ty in TYPES:
                out = os.path.join(tmp, f"{ty}.gguf")
                quantize(bin_dir, f32, out, ty, imatrix if weighted else None)
                encoded = tensors(out)
                for name in TENSORS:
                    t = encoded[name]
                    if t.tensor_type != T[ty]:
                        continue  # llama.cpp fell back to another type for rows this type does not fit
                    data = np.asarray(t.data).tobytes()
                    x = np.asarray(source[name].data, dtype=np.float32).reshape(-1)
                    q = quants.dequantize(np.asarray(t.data), T[ty]).astype(np.float32).reshape(-1)
                    imp = np.tile(importance(int(source[name].shape[0])), x.size // int(source[name].shape[0]))
                    err = float(np.sum(imp * (x.astype(np.float64) - q) ** 2) / np.sum(imp * x.astype(np.float64) ** 2))
                    digest = hashlib.sha256(data).hexdigest()
                    print(f'("{name}", "{ty}", {str(weighted).lower()}, "{digest}", {err:.6e}),')


if __name__ == "__main__":
    main()
