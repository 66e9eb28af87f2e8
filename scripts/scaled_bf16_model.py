#!/usr/bin/env python3
"""Writes a random Qwen2-shaped bf16 model (the tiny-qwen2 fixture's config and tokenizer, scaled up) for measuring
what a bf16 checkpoint costs in memory: `python3 scripts/scaled_bf16_model.py OUT_DIR [--hidden 1024 --layers 8]`,
then e.g. `/usr/bin/time -f %M nash-swarm eval --model OUT_DIR --text wiki.test.raw --ctx 128 --max-windows 2`.
"""

import argparse
import json
import os
import shutil

import numpy as np

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "tiny-qwen2-random")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=2816)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    a = p.parse_args()
    h, hd, vocab = a.hidden, a.hidden // a.heads, 512
    rng = np.random.default_rng(0)
    tensors = {}

    def add(name, shape, ones=False):
        x = np.ones(shape, np.float32) if ones else rng.standard_normal(shape, dtype=np.float32) * 0.02
        tensors[name] = (x.view(np.uint32) >> 16).astype(np.uint16)  # bf16: the high half of an f32

    add("model.embed_tokens.weight", (vocab, h))
    add("model.norm.weight", (h,), ones=True)
    for i in range(a.layers):
        p_ = f"model.layers.{i}."
        add(p_ + "input_layernorm.weight", (h,), ones=True)
        add(p_ + "post_attention_layernorm.weight", (h,), ones=True)
        for name, rows in [("q_proj", h), ("k_proj", a.kv_heads * hd), ("v_proj", a.kv_heads * hd)]:
            add(p_ + f"self_attn.{name}.weight", (rows, h))
            add(p_ + f"self_attn.{name}.bias", (rows,))
        add(p_ + "self_attn.o_proj.weight", (h, h))
        add(p_ + "mlp.gate_proj.weight", (a.intermediate, h))
        add(p_ + "mlp.up_proj.weight", (a.intermediate, h))
        add(p_ + "mlp.down_proj.weight", (h, a.intermediate))
    header, offset = {}, 0
    for name, x in tensors.items():
        header[name] = {"dtype": "BF16", "shape": list(x.shape), "data_offsets": [offset, offset + x.nbytes]}
        offset += x.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for x in tensors.values():
            f.write(x.tobytes())
    config = json.load(open(os.path.join(FIXTURE, "config.json")))
    config.update(hidden_size=h, num_hidden_layers=a.layers, intermediate_size=a.intermediate,
                  num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                  layer_types=["full_attention"] * a.layers)
    json.dump(config, open(os.path.join(a.out, "config.json"), "w"))
    shutil.copy(os.path.join(FIXTURE, "tokenizer.json"), a.out)
    print(f"{sum(x.size for x in tensors.values()) / 1e6:.1f}M parameters, {offset / 1e6:.0f} MB of bf16")


if __name__ == "__main__":
    main()
