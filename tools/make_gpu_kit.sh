#!/usr/bin/env bash
# make-gpu-kit.sh - the wheel kit that `tools/gpu_check.py --kit DIR` installs on an offline GPU box.
#
# The box: x86-64 Linux, NVIDIA GPU, Python 3.12 with torch 2.11 (CUDA 13), triton 3.6, nvcc and
# ninja, pytest, numpy, pillow, safetensors, huggingface_hub, pyyaml, psutil, aiohttp, ... but no
# sglang, no sglang-kernel/flashinfer, and none of the notebook runners (papermill, nbval,
# nbclient, ipykernel, jupyter_client). It cannot reach a package index, and one device call
# carries at most 64 MiB (repository + kit), so the kit is trimmed to what the checks load.
#
# Run it on any machine with pip and PyPI access (the wheels are cp312/manylinux x86_64; nothing
# is installed here):
#
#     bash tools/make_gpu_kit.sh [OUTDIR]        # default OUTDIR: .gpu-kit (git-ignored)
#
# It writes
#     OUTDIR/whl/     sglang 0.5.17 and the packages its offline Engine imports that the box lacks
#     OUTDIR/whl-tf/  transformers 5.12.1 (sglang's pin; model folders trimmed) + tokenizers 0.22.2
#     OUTDIR/whl-nb/  the notebook runners: papermill, nbval, nbclient, nbformat, ipykernel, ...
#     OUTDIR/kit.json what is in the kit, what was trimmed, and the sizes
#
# Trimmed (each measured or traced; see docs/gpu/README.md, "The kit"):
#   sglang-kernel  only sm90 common_ops kept: FA3/flashmla/sm100 need attention_backend="triton",
#                  mm_attention_backend="triton_attn" (tools/gpu_engine_args.json) instead
#   flashinfer     bundled CUTLASS/CCCL headers dropped; csrc/ and include/ kept, because
#                  sgl_kernel's rmsnorm JIT-compiles flashinfer's norm module at the first request
#   xgrammar       static library and headers dropped, debug info stripped
#   sglang         the Rust _core extensions (HTTP server, gRPC, Inkling) dropped
#   transformers   only the model folders that `import sglang`, its Engine, its model registry and
#                  AutoProcessor for Qwen2.5-VL and Llama 4 import (traced), see TF_MODELS below,
#                  plus every folder the auto mappings map to the classes in TF_CLASSES
#   ipykernel      installed without debugpy and jedi/parso (optional imports: a kernel ran
#                  cells under nbclient, papermill and nbval without them; docs/gpu/README.md)
#
# Needs: python3 with pip, `strip` (binutils), unzip, ~1 GB free in $TMPDIR.
set -euo pipefail

OUT=${1:-.gpu-kit}
PY=${PYTHON:-python3}
LIMIT_BYTES=$((64 * 1024 * 1024))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-kit.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT/whl" "$OUT/whl-tf" "$OUT/whl-nb"
mkdir -p "$OUT/whl" "$OUT/whl-tf" "$OUT/whl-nb" "$WORK/raw"

# pip download for the box: CPython 3.12, manylinux x86_64, no dependency resolution (every
# package is named below with its version).
fetch() {
  local dest=$1
  shift
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$dest" "$@"
}

# --- sglang and what its Engine imports that the box lacks -------------------------------------
REPACKED=(sglang==0.5.17 sglang-kernel==0.4.5 flashinfer-python==0.6.15.post1 xgrammar==0.2.1)
ENGINE_DEPS=(
  annotated-types==0.8.0 apache-tvm-ffi==0.1.11 compressed-tensors==0.20.0 dill==0.4.1
  distro==1.9.0 fastapi==0.165.0 gguf==0.19.0 ipython==9.18.1 ipython-pygments-lexers==1.1.1
  jiter==0.19.0 loguru==0.7.3 msgspec==0.22.0 openai==2.6.1 opentelemetry-api==1.45.2
  orjson==3.13.0 partial-json-parser==0.2.1.1.post7 pybase64==1.5.1 pydantic==2.14.3
  pydantic-core==2.50.4 pyzmq==27.3.0 setproctitle==1.3.8 sniffio==1.3.1 starlette==1.10.0
  traitlets==5.16.1 typing-inspection==0.4.5 uvicorn==0.54.0
)
# --- transformers pinned by sglang 0.5.17 (the box has 5.17.0, which sglang cannot import) -------
TF=(transformers==5.12.1 tokenizers==0.22.2)
# --- notebook runners and the dependencies the box and the engine set lack ---------------------
# (versions tested together on Python 3.11 with the CPU suite; traitlets, pyzmq and ipython come
# with the engine set above.)
NOTEBOOK=(
  papermill==2.7.0 nbval==0.11.0 nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0
  jupyter-client==8.10.0 jupyter-core==5.9.1 nest-asyncio==1.6.0 nest-asyncio2==1.7.4
  comm==0.2.3 matplotlib-inline==0.2.2 tornado==6.6.1 platformdirs==4.14.7
  fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
  referencing==0.37.0 rpds-py==2026.9.1 entrypoints==0.4.2 tenacity==9.2.1
  prompt-toolkit==3.0.53 wcwidth==0.9.4 pexpect==4.9.0 ptyprocess==0.7.0
  stack-data==0.6.3 asttokens==3.0.2 executing==2.3.0 pure-eval==0.2.4
)
# Model folders of transformers 5.12.1 that are imported on the box's code paths: `import
# sglang`, sglang.srt.entrypoints.engine, the scheduler, the model registry (which imports every
# sglang model module), the multimodal processors, AutoConfig/AutoProcessor/AutoTokenizer and
# AutoModelForImageTextToText for both families. Traced with a CPU import of sglang 0.5.17;
# a model module whose transformers folder is missing is skipped by sglang's registry with
# "Ignore import error", so this list is conservative, not minimal.
TF_MODELS=(
  apertus auto clip cohere cohere2 deepseek_v3 encoder_decoder ernie4_5_moe exaone4 gemma2
  gemma3 gemma3n gemma4 glm4v glm4v_moe glm_ocr glmasr gpt2 gpt_bigcode gpt_oss gptj granite
  granitemoeshared lfm2 lfm2_vl llama llama4 llava mellum mistral mistral3 mixtral mllama
  nemotron_h olmo opt parakeet persimmon phi phi3 pixtral qwen2 qwen2_5_vl qwen2_audio qwen2_vl
  qwen3 qwen3_moe siglip siglip2 starcoder2 vitdet whisper
)

# Classes the tiny and real checkpoints of both families name in their configs. transformers
# resolves each by importing the first model folder its auto mappings map to it (for
# Qwen2Tokenizer that is audioflamingo3), so every folder mapped to one of them is kept too.
TF_CLASSES=(
  Qwen2Tokenizer Qwen2TokenizerFast Qwen2_5_VLProcessor Qwen2VLImageProcessor
  Qwen2VLImageProcessorFast Qwen2VLImageProcessorPil Qwen2VLVideoProcessor Llama4Processor
  Llama4ImageProcessor Llama4ImageProcessorFast Llama4ImageProcessorPil TokenizersBackend
  PreTrainedTokenizerFast
)

fetch "$WORK/raw" "${REPACKED[@]}" "${TF[0]}"
fetch "$OUT/whl" "${ENGINE_DEPS[@]}"
fetch "$OUT/whl-tf" "${TF[1]}"
fetch "$OUT/whl-nb" "${NOTEBOOK[@]}"

# repack SRC OUTDIR [--drop GLOB...] [--strip GLOB...] [--keep-dirs PARENT NAME...]
# Copies a wheel without the members matching --drop, with `strip --strip-debug` applied to the
# members matching --strip, and (--keep-dirs) without the folders under PARENT/ not named; the
# RECORD file is rewritten to list what is left with fresh hashes, so pip installs it cleanly.
repack() {
  "$PY" - "$@" <<'PYEOF'
import base64
import fnmatch
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

src, outdir, *args = sys.argv[1:]
drop, strip, keep_parent, keep, mapped = [], [], None, set(), set()
mode = None
for arg in args:
    if arg in ("--drop", "--strip", "--keep-dirs", "--keep-mapped"):
        mode = arg
    elif mode == "--drop":
        drop.append(arg)
    elif mode == "--strip":
        strip.append(arg)
    elif mode == "--keep-mapped":
        mapped.add(arg)
    elif keep_parent is None:
        keep_parent = arg.rstrip("/") + "/"
    else:
        keep.add(arg)


def mapped_folders(zin, classes):
    """transformers' model folders that its auto mappings map to any of ``classes``.

    AutoTokenizer/AutoProcessor/AutoImageProcessor resolve a class name by importing
    the folder of the FIRST model type mapped to it (e.g. Qwen2Tokenizer ->
    audioflamingo3), so every such folder must be present.
    """
    import ast
    import re

    def parse(path):
        return ast.parse(zin.read(path).decode())

    special = {}
    for node in ast.walk(parse("transformers/models/auto/configuration_auto.py")):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "SPECIAL_MODEL_TYPE_TO_MODULE_NAME" for t in node.targets
        ):
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Dict):
                    for k, v in zip(sub.keys, sub.values):
                        if isinstance(k, ast.Constant) and isinstance(v, ast.Constant):
                            special[k.value] = v.value
    found = set()
    for path in zin.namelist():
        if not re.fullmatch(r"transformers/models/auto/[a-z_]+\.py", path):
            continue
        for node in ast.walk(parse(path)):
            if not (isinstance(node, ast.Tuple) and len(node.elts) == 2):
                continue
            key = node.elts[0]
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                continue
            names = {n.value for n in ast.walk(node.elts[1]) if isinstance(n, ast.Constant)}
            if names & classes:
                found.add(special.get(key.value, key.value.replace("-", "_")))
    return found


def wanted(name):
    if any(fnmatch.fnmatch(name, pattern) for pattern in drop):
        return False
    if keep_parent and name.startswith(keep_parent):
        rest = name[len(keep_parent):]
        if "/" in rest and rest.split("/", 1)[0] not in keep:
            return False
    return True


def digest(data):
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


with zipfile.ZipFile(src) as zin:
    if mapped:
        extra = mapped_folders(zin, mapped) - keep
        print(f"  + {len(extra)} model folders mapped to {sorted(mapped)}: {' '.join(sorted(extra))}")
        keep |= extra
    infos = [i for i in zin.infolist() if wanted(i.filename)]
    blobs = {i.filename: zin.read(i.filename) for i in infos}
for name in blobs:
    if any(fnmatch.fnmatch(name, pattern) for pattern in strip):
        with tempfile.NamedTemporaryFile(delete=False) as tmp:
            tmp.write(blobs[name])
        subprocess.run(["strip", "--strip-debug", tmp.name], check=True)
        with open(tmp.name, "rb") as fh:
            blobs[name] = fh.read()
        os.unlink(tmp.name)
record = next(n for n in blobs if n.endswith(".dist-info/RECORD"))
rows = []
for line in blobs[record].decode().splitlines():
    path = line.split(",", 1)[0]
    if path == record:
        rows.append(f"{record},,")
    elif path in blobs:
        rows.append(f"{path},{digest(blobs[path])},{len(blobs[path])}")
blobs[record] = ("\n".join(rows) + "\n").encode()
dst = os.path.join(outdir, os.path.basename(src))
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
    for info in infos:
        zout.writestr(info, blobs[info.filename], zipfile.ZIP_DEFLATED, 9)
before, after = os.path.getsize(src), os.path.getsize(dst)
print(f"  {os.path.basename(dst)}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
PYEOF
}

echo "repacking:"
repack "$WORK"/raw/sglang-0.5.17-*.whl "$OUT/whl" --drop \
  'sglang/srt/server/_core*.so' 'sglang/srt/grpc/_core*.so' 'sglang/srt/multimodal/_core*.so'
repack "$WORK"/raw/sglang_kernel-0.4.5-*.whl "$OUT/whl" --drop \
  'sgl_kernel/flash_ops*.so' 'sgl_kernel/sm100/*' 'sgl_kernel/flashmla_ops*.so' \
  'sgl_kernel/infllm_ops*.so'
repack "$WORK"/raw/flashinfer_python-0.6.15.post1-*.whl "$OUT/whl" --drop \
  'flashinfer/data/cccl/*' 'flashinfer/data/cutlass/*'
repack "$WORK"/raw/xgrammar-0.2.1-*.whl "$OUT/whl" --drop 'xgrammar/lib/*' 'xgrammar/include/*' \
  --strip 'xgrammar/*.so'
repack "$WORK"/raw/transformers-5.12.1-*.whl "$OUT/whl-tf" --keep-dirs transformers/models \
  "${TF_MODELS[@]}" --keep-mapped "${TF_CLASSES[@]}"

# kit.json: contents and sizes; the device call's 64 MiB covers the kit plus the repository.
"$PY" - "$OUT" "$LIMIT_BYTES" <<'PYEOF'
import json
import os
import sys
from pathlib import Path

out, limit = Path(sys.argv[1]), int(sys.argv[2])
groups = {}
for sub in ("whl", "whl-tf", "whl-nb"):
    wheels = sorted((out / sub).glob("*.whl"))
    groups[sub] = {w.name: w.stat().st_size for w in wheels}
total = sum(sum(g.values()) for g in groups.values())
manifest = {
    "python": "cp312",
    "platform": "manylinux x86_64",
    "groups": groups,
    "bytes": {k: sum(v.values()) for k, v in groups.items()},
    "total_bytes": total,
    "device_call_limit_bytes": limit,
    "install": {
        "whl": "pip install --no-index --no-deps --no-compile --target SITE",
        "whl-nb": "pip install --no-index --no-deps --no-compile --target SITE",
        "whl-tf": "pip install --no-index --no-deps --no-compile --target SITE_TF (first on PYTHONPATH)",
    },
}
(out / "kit.json").write_text(json.dumps(manifest, indent=2) + "\n")
for sub, size in manifest["bytes"].items():
    print(f"{sub:7s} {len(groups[sub]):3d} wheels {size / 2**20:6.1f} MiB")
print(f"kit     total  {total / 2**20:6.1f} MiB of the {limit / 2**20:.0f} MiB a device call carries")
PYEOF

cat <<EOF

Use it on the GPU box (the kit travels with the repository, e.g. as a carried path):
  tools/gpu_check.py --kit $OUT            # installs into /tmp/vlm-gpu-kit, then runs every stage
EOF
