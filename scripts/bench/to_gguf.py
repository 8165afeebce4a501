"""Converts a benchmark checkpoint to GGUF with llama.cpp's own converter
(from the llama-cpp-python sdist's vendor/llama.cpp; none of its code is in
this repository).

usage: to_gguf.py LLAMA_CPP_DIR CHECKPOINT_DIR OUT.gguf

The random checkpoints carry a small stand-in BPE tokenizer, which the
converter cannot identify by its hash; we name the pre-tokenizer instead. It
only affects tokenizing text, which the benchmark never does (it feeds ids).
"""
import runpy
import sys

llama_cpp, checkpoint, out = sys.argv[1:4]
sys.path[:0] = [llama_cpp, f"{llama_cpp}/gguf-py"]
import conversion.base as base  # noqa: E402

base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
sys.argv = ["convert_hf_to_gguf.py", checkpoint, "--outtype", "f32", "--outfile", out]
runpy.run_path(f"{llama_cpp}/convert_hf_to_gguf.py", run_name="__main__")
