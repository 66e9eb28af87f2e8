#!/usr/bin/env python3
"""Does llama.cpp split text the way the Hugging Face tokenizer of the source does, on a GGUF we exported?

Loads the GGUF's vocabulary in llama.cpp (llama-cpp-python 0.3.36 run from its source tree over the shared
libraries of a cmake build of its vendored llama.cpp, as in scripts/gguf_vs_llama_cpp.py) and the source's
tokenizer.json in `tokenizers`, tokenizes pieces of a text (and a few hard strings: runs of spaces, newlines,
accents, digits, characters outside the vocabulary) with both, and prints per piece the token counts, whether the
ids are equal and, when not, where they first differ.

usage: tokenizer_vs_llama_cpp.py EXPORT.gguf SOURCE/tokenizer.json TEXT SDIST_DIR LLAMA_BIN_DIR
"""
import os
import sys


def main():
    gguf, tok_json, text_path, sdist, bin_dir = sys.argv[1:6]
    sys.path.insert(0, sdist)
    os.environ["LLAMA_CPP_LIB_PATH"] = os.path.abspath(bin_dir)
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    llm = Llama(model_path=gguf, n_ctx=64, vocab_only=True, verbose=False)
    hf = Tokenizer.from_file(tok_json)
    text = open(text_path, encoding="utf-8").read()
    pieces = [text[:20000], text[100000:140000], "  two  spaces\n\nand é, ü — 1234 ☃ end ", "Once upon a time"]
    all_equal = True
    for piece in pieces:
        ours = llm.tokenize(piece.encode("utf-8"), add_bos=False, special=False)
        theirs = hf.encode(piece, add_special_tokens=False).ids
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        equal = ours == theirs
        all_equal &= equal
        print(f"{len(theirs):6} tokens (tokenizers) {len(ours):6} (llama.cpp)  equal: {equal}"
              + ("" if first is None else f"  first difference at {first}"))
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
