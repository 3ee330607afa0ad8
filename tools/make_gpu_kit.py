"""Build the wheel kit that ``tools/gpu_check.py --kit DIR`` installs on an offline GPU box.

The box: x86-64 Linux, an NVIDIA GPU, Python 3.12 with torch 2.11 (CUDA 13), triton 3.6, nvcc
and ninja, pytest, numpy, pillow, safetensors, huggingface_hub, pyyaml, psutil, aiohttp, ... but
no sglang, no sglang-kernel or flashinfer, and none of the notebook runners. It cannot reach a
package index, and one device call carries at most 64 MiB (repository and kit), so the kit is
trimmed to what the checks load (about 50 MiB).

Run it on any machine with pip and access to the package index (the wheels are for cp312 on
manylinux x86_64; nothing is installed here; needs binutils' ``strip`` and ~1 GB in $TMPDIR):

    python tools/make_gpu_kit.py [OUTDIR]        # default OUTDIR: .gpu-kit (git-ignored)

It writes
    OUTDIR/whl/     sglang 0.5.17 and the packages its offline Engine imports that the box lacks
    OUTDIR/whl-tf/  transformers 5.12.1 (sglang's pin; model folders trimmed) and tokenizers 0.22.2
    OUTDIR/whl-nb/  the notebook runners: papermill, nbval, nbclient, nbformat, ipykernel, ...
    OUTDIR/kit.json what is in the kit and the sizes

Trimmed (each measured or traced; docs/gpu/README.md, "The kit"):
    sglang-kernel  only sm90 common_ops kept: FA3, flashmla and sm100 need the triton attention
                   backends instead (tools/gpu_engine_args.json)
    flashinfer     bundled CUTLASS/CCCL headers dropped; csrc/ and include/ kept, because
                   sgl_kernel's rmsnorm JIT-compiles flashinfer's norm module at the first request
    xgrammar       static library and headers dropped, debug info stripped
    sglang         the Rust _core extensions (HTTP server, gRPC, Inkling) dropped
    transformers   only the model folders that sglang's Engine, its model registry and the Auto
                   classes of both families import (TF_MODELS), plus every folder the auto
                   mappings map to the classes in TF_CLASSES
    ipykernel      without debugpy and jedi/parso (optional imports: cells ran under nbclient,
                   papermill and nbval without them)

Example:
    $ python tools/make_gpu_kit.py .gpu-kit
    $ python3 tools/gpu_check.py --kit .gpu-kit      # on the GPU box
"""

from __future__ import annotations

import argparse
import ast
import base64
import fnmatch
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

LIMIT_BYTES = 64 * 2**20  # what one device call carries, repository included

#: Big wheels, repacked without what the checks never load.
REPACKED = [
    "sglang==0.5.17",
    "sglang-kernel==0.4.5",
    "flashinfer-python==0.6.15.post1",
    "xgrammar==0.2.1",
]
# fmt: off
#: What sglang's offline Engine imports that the box lacks (found by importing its modules).
ENGINE_DEPS = [
    "annotated-types==0.8.0", "apache-tvm-ffi==0.1.11", "compressed-tensors==0.20.0",
    "dill==0.4.1", "distro==1.9.0", "fastapi==0.165.0", "gguf==0.19.0", "ipython==9.18.1",
    "ipython-pygments-lexers==1.1.1", "jiter==0.19.0", "loguru==0.7.3", "msgspec==0.22.0",
    "openai==2.6.1", "opentelemetry-api==1.45.2", "orjson==3.13.0",
    "partial-json-parser==0.2.1.1.post7", "pybase64==1.5.1", "pydantic==2.14.3",
    "pydantic-core==2.50.4", "pyzmq==27.3.0", "setproctitle==1.3.8", "sniffio==1.3.1",
    "starlette==1.10.0", "traitlets==5.16.1", "typing-inspection==0.4.5", "uvicorn==0.54.0",
]
#: sglang 0.5.17's transformers pin (the box has 5.17.0, which sglang cannot import).
TRANSFORMERS = "transformers==5.12.1"
TOKENIZERS = "tokenizers==0.22.2"
#: The notebook runners and what the box and the engine set lack (tested together).
NOTEBOOK = [
    "papermill==2.7.0", "nbval==0.11.0", "nbclient==0.11.0", "nbformat==5.11.1",
    "ipykernel==7.4.0", "jupyter-client==8.10.0", "jupyter-core==5.9.1", "nest-asyncio==1.6.0",
    "nest-asyncio2==1.7.4", "comm==0.2.3", "matplotlib-inline==0.2.2", "tornado==6.6.1",
    "platformdirs==4.14.7", "fastjsonschema==2.22.3", "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1", "referencing==0.37.0", "rpds-py==2026.9.1",
    "entrypoints==0.4.2", "tenacity==9.2.1", "prompt-toolkit==3.0.53", "wcwidth==0.9.4",
    "pexpect==4.9.0", "ptyprocess==0.7.0", "stack-data==0.6.3", "asttokens==3.0.2",
    "executing==2.3.0", "pure-eval==0.2.4",
]
#: transformers 5.12.1's model folders imported on the box's code paths: `import sglang`, its
#: Engine, the scheduler, the model registry (which imports every sglang model module), the
#: multimodal processors, and the Auto classes for both families. A model module whose folder is
#: missing is skipped by sglang's registry ("Ignore import error"), so this list is conservative.
TF_MODELS = [
    "apertus", "auto", "clip", "cohere", "cohere2", "deepseek_v3", "encoder_decoder",
    "ernie4_5_moe", "exaone4", "gemma2", "gemma3", "gemma3n", "gemma4", "glm4v", "glm4v_moe",
    "glm_ocr", "glmasr", "gpt2", "gpt_bigcode", "gpt_oss", "gptj", "granite", "granitemoeshared",
    "lfm2", "lfm2_vl", "llama", "llama4", "llava", "mellum", "mistral", "mistral3", "mixtral",
    "mllama", "nemotron_h", "olmo", "opt", "parakeet", "persimmon", "phi", "phi3", "pixtral",
    "qwen2", "qwen2_5_vl", "qwen2_audio", "qwen2_vl", "qwen3", "qwen3_moe", "siglip", "siglip2",
    "starcoder2", "vitdet", "whisper",
]
#: Classes the tiny and real checkpoints of both families name in their configs. transformers
#: resolves each by importing the first model folder its auto mappings map to it (for
#: Qwen2Tokenizer that is audioflamingo3), so every folder mapped to one of them is kept too.
TF_CLASSES = [
    "Qwen2Tokenizer", "Qwen2TokenizerFast", "Qwen2_5_VLProcessor", "Qwen2VLImageProcessor",
    "Qwen2VLImageProcessorFast", "Qwen2VLImageProcessorPil", "Qwen2VLVideoProcessor",
    "Llama4Processor", "Llama4ImageProcessor", "Llama4ImageProcessorFast",
    "Llama4ImageProcessorPil", "TokenizersBackend", "PreTrainedTokenizerFast",
]
# fmt: on
#: Per repacked wheel (file name prefix): members dropped, members stripped of debug info.
TRIMS: dict[str, dict[str, list[str]]] = {
    "sglang-": {
        "drop": [
            "sglang/srt/server/_core*.so",
            "sglang/srt/grpc/_core*.so",
            "sglang/srt/multimodal/_core*.so",
        ]
    },
    "sglang_kernel-": {
        "drop": [
            "sgl_kernel/flash_ops*.so",
            "sgl_kernel/sm100/*",
            "sgl_kernel/flashmla_ops*.so",
            "sgl_kernel/infllm_ops*.so",
        ]
    },
    "flashinfer_python-": {"drop": ["flashinfer/data/cccl/*", "flashinfer/data/cutlass/*"]},
    "xgrammar-": {"drop": ["xgrammar/lib/*", "xgrammar/include/*"], "strip": ["xgrammar/*.so"]},
}
PLATFORMS = [
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
    "any",
]


def fetch(dest: Path, pins: Sequence[str], python: str = sys.executable) -> None:
    """``pip download`` ``pins`` for the box (CPython 3.12, manylinux x86_64), without deps."""
    cmd = [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp"]
    cmd += ["--abi", "cp312", "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run([*cmd, "-d", str(dest), *pins], check=True)


def record_hash(data: bytes) -> str:
    """A wheel RECORD's hash field of ``data``.

    Example:
        >>> record_hash(b"")
        'sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU'
    """
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mapped_folders(zin: zipfile.ZipFile, classes: Iterable[str]) -> set[str]:
    """transformers' model folders that its auto mappings map to any of ``classes``.

    The Auto classes resolve a class name by importing the folder of the FIRST model type
    mapped to it (e.g. Qwen2Tokenizer -> audioflamingo3), so every such folder must be there.
    """
    wanted = set(classes)

    def parse(path: str) -> ast.Module:
        return ast.parse(zin.read(path).decode())

    special: dict[str, str] = {}
    for node in ast.walk(parse("transformers/models/auto/configuration_auto.py")):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(getattr(t, "id", "") == "SPECIAL_MODEL_TYPE_TO_MODULE_NAME" for t in targets):
            assert isinstance(node, ast.Assign)
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Dict):
                    for k, v in zip(sub.keys, sub.values, strict=True):
                        if isinstance(k, ast.Constant) and isinstance(v, ast.Constant):
                            special[str(k.value)] = str(v.value)
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
            if names & wanted:
                found.add(special.get(key.value, key.value.replace("-", "_")))
    return found


def _strip_debug(data: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lib.so"
        path.write_bytes(data)
        subprocess.run(["strip", "--strip-debug", str(path)], check=True)
        return path.read_bytes()


def repack(
    src: Path,
    out_dir: Path,
    drop: Sequence[str] = (),
    strip: Sequence[str] = (),
    keep_parent: str | None = None,
    keep: Iterable[str] = (),
    keep_mapped: Iterable[str] = (),
) -> Path:
    """Copy the wheel ``src`` into ``out_dir`` without what the box never loads.

    Members matching a ``drop`` pattern go; members matching a ``strip`` pattern lose their
    debug info; with ``keep_parent`` (e.g. ``"transformers/models"``) only the folders under it
    named in ``keep``, or mapped to a class of ``keep_mapped``, stay. RECORD is rewritten with
    fresh hashes, so pip installs the copy cleanly. Returns the new wheel's path.

    Example:
        >>> repack(Path("x-1.0-py3-none-any.whl"), Path("out"), drop=["x/big/*"])  # doctest: +SKIP
        PosixPath('out/x-1.0-py3-none-any.whl')
    """
    kept_folders = set(keep)
    parent = keep_parent.rstrip("/") + "/" if keep_parent else None

    def wanted(name: str) -> bool:
        if any(fnmatch.fnmatch(name, pattern) for pattern in drop):
            return False
        if parent and name.startswith(parent):
            rest = name[len(parent) :]
            return "/" not in rest or rest.split("/", 1)[0] in kept_folders
        return True

    with zipfile.ZipFile(src) as zin:
        if keep_mapped:
            extra = mapped_folders(zin, keep_mapped) - kept_folders
            print(f"  + {len(extra)} model folders mapped to the kept classes: {sorted(extra)}")
            kept_folders |= extra
        infos = [info for info in zin.infolist() if wanted(info.filename)]
        blobs = {info.filename: zin.read(info.filename) for info in infos}
    for name in blobs:
        if any(fnmatch.fnmatch(name, pattern) for pattern in strip):
            blobs[name] = _strip_debug(blobs[name])
    record = next(name for name in blobs if name.endswith(".dist-info/RECORD"))
    rows = []
    for line in blobs[record].decode().splitlines():
        path = line.split(",", 1)[0]
        if path == record:
            rows.append(f"{record},,")
        elif path in blobs:
            rows.append(f"{path},{record_hash(blobs[path])},{len(blobs[path])}")
    blobs[record] = ("\n".join(rows) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / src.name
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in infos:
            zout.writestr(info, blobs[info.filename], zipfile.ZIP_DEFLATED, 9)
    before, after = src.stat().st_size, dst.stat().st_size
    print(f"  {dst.name}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return dst


def write_manifest(out: Path, limit: int = LIMIT_BYTES) -> dict[str, Any]:
    """Write ``out/kit.json``: each group's wheels and sizes, the total and the call's limit."""
    groups = {
        sub: {w.name: w.stat().st_size for w in sorted((out / sub).glob("*.whl"))}
        for sub in ("whl", "whl-tf", "whl-nb")
    }
    manifest = {
        "python": "cp312",
        "platform": "manylinux x86_64",
        "groups": groups,
        "bytes": {sub: sum(sizes.values()) for sub, sizes in groups.items()},
        "total_bytes": sum(sum(sizes.values()) for sizes in groups.values()),
        "device_call_limit_bytes": limit,
        "install": {
            "whl": "pip install --no-index --no-deps --no-compile --target SITE",
            "whl-nb": "pip install --no-index --no-deps --no-compile --target SITE",
            "whl-tf": "pip install --no-index --no-deps --no-compile --target SITE_TF (first)",
        },
    }
    (out / "kit.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/make_gpu_kit.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("out", nargs="?", type=Path, default=Path(".gpu-kit"))
    parser.add_argument("--python", default=sys.executable, help="the pip to download with")
    args = parser.parse_args(argv)
    out: Path = args.out
    for sub in ("whl", "whl-tf", "whl-nb"):
        for old in (out / sub).glob("*.whl"):
            old.unlink()
        (out / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-kit.") as tmp:
        raw = Path(tmp)
        fetch(raw, [*REPACKED, TRANSFORMERS], args.python)
        fetch(out / "whl", ENGINE_DEPS, args.python)
        fetch(out / "whl-tf", [TOKENIZERS], args.python)
        fetch(out / "whl-nb", NOTEBOOK, args.python)
        print("repacking:")
        for prefix, trim in TRIMS.items():
            (src,) = [p for p in raw.glob(f"{prefix}*.whl") if p.name[len(prefix)].isdigit()]
            repack(src, out / "whl", drop=trim.get("drop", []), strip=trim.get("strip", []))
        (src,) = raw.glob("transformers-*.whl")
        repack(src, out / "whl-tf", keep_parent="transformers/models", keep=TF_MODELS,
               keep_mapped=TF_CLASSES)  # fmt: skip
    manifest = write_manifest(out)
    for sub, size in manifest["bytes"].items():
        print(f"{sub:7s} {len(manifest['groups'][sub]):3d} wheels {size / 2**20:6.1f} MiB")
    total, limit = manifest["total_bytes"], manifest["device_call_limit_bytes"]
    print(f"kit     total  {total / 2**20:6.1f} MiB of the {limit / 2**20:.0f} MiB a call carries")
    print(f"\nOn the GPU box: python3 tools/gpu_check.py --kit {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
