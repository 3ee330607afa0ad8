"""The fast forward of transformers' Qwen2.5-VL vision tower: batched attention, varlen, compile.

transformers 5.12.1's ``Qwen2_5_VisionTransformerPretrainedModel.forward``
attends every window (and every image) in its own
``scaled_dot_product_attention`` call: 256 calls per block for one image of
4096 tokens. :class:`QwenTower` runs the same steps with the same weights
(patch embedding, window reordering, rotary embedding, the blocks, the merger)
and attends all the segments of a block at once, for every image of the call:

* ``attention="sdpa"``: segments of one length are gathered into one batch of
  one ``scaled_dot_product_attention`` call (:class:`SegmentPlan`). On the CPU
  the embedding is bit-identical to transformers' forward.
* ``attention="cudnn"``: the same calls, restricted to SDPA's cuDNN backend
  (CUDA; on Hopper cuDNN has its own attention kernels, where SDPA's default is
  FlashAttention-2).
* ``attention="varlen"``: one ``torch.nn.attention.varlen.varlen_attn`` call
  over the packed sequence, whatever the segment lengths
  (:class:`VarlenSegments`; CUDA, bfloat16 or float16, torch 2.10 or later).
* ``compile=True``: the work around the attention of each block (RMSNorm,
  ``qkv``, rotary embedding; projection, residual, RMSNorm, SiLU-gated MLP)
  and the merger go through ``torch.compile``, which fuses the elementwise
  steps. One compiled graph serves all 32 blocks and every image size (the
  token dimension is dynamic). The results agree with transformers' tower to
  rounding, not bit for bit.

Example:
    >>> fast = QwenTower(encoder.module, attention="varlen", compile=True)  # doctest: +SKIP
    >>> fast(pixel_values, image_grid_thw).shape  # (image tokens, 2048)  # doctest: +SKIP
    torch.Size([4096, 2048])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VisionTransformerPretrainedModel,
        Qwen2_5_VLVisionBlock,
    )

#: Values of ``attention``.
ATTENTION_BACKENDS = ("sdpa", "cudnn", "varlen")

#: The backends that need a CUDA device.
_CUDA_ONLY = ("cudnn", "varlen")

#: The MLP activations the fast forward knows, by the vision config's ``hidden_act``.
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"silu": F.silu}


def check_attention(attention: str, device: torch.device | str, dtype: torch.dtype | None) -> None:
    """Raise ``ValueError`` unless ``attention`` can run on ``device`` in ``dtype``.

    Cheap: call it before loading any weights.

    Example:
        >>> check_attention("sdpa", "cpu", torch.float32)
        >>> check_attention("varlen", "cpu", torch.float32)
        Traceback (most recent call last):
        ...
        ValueError: attention='varlen' runs on CUDA only (flash-attention kernels), not on 'cpu'; use attention='sdpa' there
    """
    if attention not in ATTENTION_BACKENDS:
        raise ValueError(f"attention={attention!r} is not one of {ATTENTION_BACKENDS}")
    if attention not in _CUDA_ONLY:
        return
    device = torch.device(device)
    if device.type != "cuda":
        kernels = "flash-attention" if attention == "varlen" else "cuDNN"
        raise ValueError(
            f"attention={attention!r} runs on CUDA only ({kernels} kernels), not on "
            f"{str(device)!r}; use attention='sdpa' there"
        )
    if attention == "cudnn":
        return
    if dtype is not None and dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"attention='varlen' needs bfloat16 or float16 weights (flash attention), got {dtype}; "
            "load with dtype=torch.bfloat16"
        )
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        raise ValueError(
            f"attention='varlen' needs torch.nn.attention.varlen (torch 2.10 or later); this is "
            f"torch {torch.__version__}: use attention='sdpa'"
        ) from None


class SegmentPlan:
    """Attention within segments of a packed sequence, batched by segment length.

    ``cu_seqlens`` marks the segments (windows, or whole images). Segments of
    one length are gathered into a ``[batch, heads, length, head_dim]`` tensor
    and attended in a single ``scaled_dot_product_attention`` call, without a
    mask; an image has at most four window lengths (inner windows, right
    edge, bottom edge, corner). ``backends`` restricts SDPA to those
    ``torch.nn.attention.SDPBackend`` values.

    Example:
        >>> plan = SegmentPlan(torch.tensor([0, 4, 8, 10]), torch.device("cpu"))
        >>> [length for length, _ in plan.groups]
        [2, 4]
    """

    def __init__(
        self, cu_seqlens: torch.Tensor, device: torch.device, backends: list[Any] | None = None
    ) -> None:
        self.backends = backends
        bounds = [int(x) for x in cu_seqlens.tolist()]
        self.total = bounds[-1]
        by_length: dict[int, list[int]] = {}
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            if end > start:
                by_length.setdefault(end - start, []).append(start)
        self.groups: list[tuple[int, torch.Tensor | None]] = []
        for length, starts in sorted(by_length.items()):
            if len(starts) * length == self.total:  # one length: the packed sequence is the batch
                self.groups.append((length, None))
                continue
            first = torch.tensor(starts, dtype=torch.long)
            index = (first[:, None] + torch.arange(length)[None, :]).reshape(-1)
            self.groups.append((length, index.to(device)))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """``q, k, v``: ``[tokens, heads, head_dim]`` -> attention output of the same shape."""
        if self.backends is None:
            return self._attend(q, k, v, scale)
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(self.backends):
            return self._attend(q, k, v, scale)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> torch.Tensor:
        n, heads, dim = q.shape
        if len(self.groups) == 1 and self.groups[0][1] is None:
            length = self.groups[0][0]
            qb, kb, vb = (
                t.view(n // length, length, heads, dim).transpose(1, 2) for t in (q, k, v)
            )
            out = F.scaled_dot_product_attention(qb, kb, vb, scale=scale)
            return out.transpose(1, 2).reshape(n, heads, dim)
        out = torch.empty_like(q)
        for length, index in self.groups:
            assert index is not None
            qb, kb, vb = (
                t.index_select(0, index).view(-1, length, heads, dim).transpose(1, 2)
                for t in (q, k, v)
            )
            o = F.scaled_dot_product_attention(qb, kb, vb, scale=scale)
            out.index_copy_(0, index, o.transpose(1, 2).reshape(-1, heads, dim))
        return out


class VarlenSegments:
    """Attention within segments of a packed sequence in one ``varlen_attn`` call (CUDA only).

    Example:
        >>> plan = VarlenSegments(cu_window_seqlens, torch.device("cuda"))  # doctest: +SKIP
        >>> plan.attend(q, k, v, scale=80**-0.5).shape == q.shape  # doctest: +SKIP
        True
    """

    def __init__(self, cu_seqlens: torch.Tensor, device: torch.device) -> None:
        bounds = cu_seqlens.to(device="cpu", dtype=torch.int64)
        self.max_length = int(torch.diff(bounds).max()) if len(bounds) > 1 else 0
        self.cu_seqlens = bounds.to(device=device, dtype=torch.int32)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """``q, k, v``: ``[tokens, heads, head_dim]`` -> attention output of the same shape."""
        from torch.nn.attention.varlen import varlen_attn

        cu, length = self.cu_seqlens, self.max_length
        out = varlen_attn(q, k, v.contiguous(), cu, cu, length, length, scale=scale)
        assert isinstance(out, torch.Tensor)
        return out


# --------------------------------------------------------------------------- one block, as tensors
# Pure functions of tensors (weights passed in), so that one torch.compile graph
# serves every block. The steps and their order are those of transformers'
# Qwen2_5_VLRMSNorm, Qwen2_5_VLVisionAttention, Qwen2_5_VLMLP and
# Qwen2_5_VLPatchMerger: run eagerly, they give the same bits.


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    dtype = t.dtype
    t = t.float()
    return ((t * cos) + (_rotate_half(t) * sin)).to(dtype)


def _attention_inputs(
    x: torch.Tensor,
    norm_weight: torch.Tensor,
    eps: float,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RMSNorm, ``qkv`` and the rotary embedding: ``q, k, v`` as ``[tokens, heads, head_dim]``."""
    n = x.shape[0]
    qkv = F.linear(_rms_norm(x, norm_weight, eps), qkv_weight, qkv_bias)
    q, k, v = qkv.reshape(n, 3, heads, -1).unbind(1)
    cos, sin = cos.unsqueeze(-2).float(), sin.unsqueeze(-2).float()
    return _rotary(q, cos, sin), _rotary(k, cos, sin), v


def _attention_output_and_mlp(
    x: torch.Tensor,
    attended: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    norm_weight: torch.Tensor,
    eps: float,
    gate_weight: torch.Tensor,
    gate_bias: torch.Tensor,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor,
    act: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The attention's projection and residual, then RMSNorm, the gated MLP and its residual."""
    x = x + F.linear(attended.reshape(x.shape[0], -1), proj_weight, proj_bias)
    h = _rms_norm(x, norm_weight, eps)
    gated = act(F.linear(h, gate_weight, gate_bias)) * F.linear(h, up_weight, up_bias)
    return x + F.linear(gated, down_weight, down_bias)


def _merge(
    x: torch.Tensor,
    norm_weight: torch.Tensor,
    eps: float,
    width: int,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
) -> torch.Tensor:
    """The patch merger: RMSNorm, 2 x 2 patches into one row, Linear, GELU, Linear."""
    h = _rms_norm(x, norm_weight, eps).view(-1, width)
    return F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2)


_STEPS: dict[str, Callable[..., Any]] = {
    "attention_inputs": _attention_inputs,
    "attention_output_and_mlp": _attention_output_and_mlp,
    "merge": _merge,
}


def _compiled_steps() -> dict[str, Callable[..., Any]]:
    return {name: torch.compile(fn, dynamic=None) for name, fn in _STEPS.items()}


def _dynamic_rows(*tensors: torch.Tensor) -> None:
    """Mark the token dimension dynamic: one compiled graph for every image size."""
    for t in tensors:
        torch._dynamo.maybe_mark_dynamic(t, 0)


class QwenTower:
    """A loaded ``Qwen2_5_VisionTransformerPretrainedModel`` run with batched attention.

    Args:
        tower: transformers' tower module, with its weights (not copied: the
            fast forward reads them from the module at every call).
        attention: ``"sdpa"`` (:class:`SegmentPlan`, any device), ``"cudnn"``
            (the same, SDPA's cuDNN backend only; CUDA) or ``"varlen"``
            (:class:`VarlenSegments`, CUDA).
        compile: ``torch.compile`` the work around the attention (see the module docs).

    Calling it with ``pixel_values`` and ``grid_thw`` of any number of images
    returns the merged embeddings, the tower's ``pooler_output`` (one row per
    image token, images in order).

    Example:
        >>> fast = QwenTower(tower)  # doctest: +SKIP
        >>> torch.equal(fast(pixel_values, grid_thw), tower(pixel_values, grid_thw=grid_thw).pooler_output)  # doctest: +SKIP
        True
    """

    def __init__(
        self, tower: torch.nn.Module, attention: str = "sdpa", compile: bool = False
    ) -> None:
        if attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention={attention!r} is not one of {ATTENTION_BACKENDS}")
        act = getattr(tower.config, "hidden_act", "silu")
        if act not in _ACTIVATIONS:
            raise ValueError(
                f"the fast Qwen2.5-VL tower knows the MLP activations {sorted(_ACTIVATIONS)}, and "
                f"this tower's config has hidden_act={act!r}; run transformers' forward "
                "(--client-encoder transformers)"
            )
        self.tower = tower
        self.attention = attention
        self.compile = compile
        self._act = _ACTIVATIONS[act]
        self._steps = _compiled_steps() if compile else dict(_STEPS)

    def __repr__(self) -> str:
        return f"QwenTower(attention={self.attention!r}, compile={self.compile})"

    def _plan(self, cu_seqlens: torch.Tensor, device: torch.device) -> SegmentPlan | VarlenSegments:
        if self.attention == "varlen":
            return VarlenSegments(cu_seqlens, device)
        if self.attention == "cudnn":
            from torch.nn.attention import SDPBackend

            return SegmentPlan(cu_seqlens, device, [SDPBackend.CUDNN_ATTENTION])
        return SegmentPlan(cu_seqlens, device)

    def __call__(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        from transformers.vision_utils import (
            get_vision_cu_seqlens,
            get_vision_position_ids,
            get_vision_window_index,
        )

        # The tower by its class: nn.Module types its attribute access as ``Tensor | Module``.
        tower = cast("Qwen2_5_VisionTransformerPretrainedModel", self.tower)
        blocks = cast("Iterable[Qwen2_5_VLVisionBlock]", tower.blocks)
        device = pixel_values.device
        merge, unit = tower.spatial_merge_size, tower.spatial_merge_unit
        # The index bookkeeping is small integer work: on the CPU, then moved once.
        grid = torch.as_tensor(grid_thw).to("cpu")
        position_ids = get_vision_position_ids(grid, merge).to(device)
        cu_seqlens = get_vision_cu_seqlens(grid)
        window_index, cu_window_seqlens = get_vision_window_index(
            grid,
            spatial_merge_size=merge,
            window_size=tower.window_size,
            patch_size=tower.patch_size,
        )
        window_index = window_index.to(device)

        hidden = tower.patch_embed(pixel_values)
        n = hidden.shape[0]
        hidden = hidden.reshape(n // unit, unit, -1)[window_index].reshape(n, -1)
        rotary = tower.rotary_pos_emb(position_ids)
        rotary = rotary.reshape(n // unit, unit, -1)[window_index].reshape(n, -1)
        emb = torch.cat((rotary, rotary), dim=-1)
        cos, sin = emb.cos(), emb.sin()

        full_plan = self._plan(cu_seqlens, device)
        window_plan = self._plan(cu_window_seqlens, device)
        full_blocks = set(tower.fullatt_block_indexes)
        steps = self._steps
        if self.compile:
            _dynamic_rows(hidden, cos, sin)
        for i, block in enumerate(blocks):
            attn, mlp = block.attn, block.mlp
            q, k, v = steps["attention_inputs"](
                hidden,
                block.norm1.weight,
                block.norm1.variance_epsilon,
                attn.qkv.weight,
                attn.qkv.bias,
                cos,
                sin,
                attn.num_heads,
            )
            plan = full_plan if i in full_blocks else window_plan
            attended = plan.attend(q, k, v, scale=attn.scaling)
            if self.compile:
                _dynamic_rows(attended)
            hidden = steps["attention_output_and_mlp"](
                hidden,
                attended,
                attn.proj.weight,
                attn.proj.bias,
                block.norm2.weight,
                block.norm2.variance_epsilon,
                mlp.gate_proj.weight,
                mlp.gate_proj.bias,
                mlp.up_proj.weight,
                mlp.up_proj.bias,
                mlp.down_proj.weight,
                mlp.down_proj.bias,
                self._act,
            )
        merger = tower.merger
        first, _, second = merger.mlp
        merged = steps["merge"](
            hidden,
            merger.ln_q.weight,
            merger.ln_q.variance_epsilon,
            merger.hidden_size,
            first.weight,
            first.bias,
            second.weight,
            second.bias,
        )
        return merged[torch.argsort(window_index)]


class QwenEncoder:
    """A loaded Qwen2.5-VL encoder's ``module`` run by :class:`QwenTower`, called like the encoder.

    ``encoder`` is what :func:`vlm_tutorial.load_vision_encoder` returns: its
    ``module`` is transformers' tower, whose weights the fast forward reads.

    Example:
        >>> fast = QwenEncoder(load_vision_encoder(path), attention="sdpa")  # doctest: +SKIP
        >>> fast(processor_output).shape  # doctest: +SKIP
        torch.Size([64, 2048])
    """

    def __init__(self, encoder: Any, attention: str = "sdpa", compile: bool = False) -> None:
        self.tower = QwenTower(encoder.module, attention=attention, compile=compile)
        self.family, self.text_hidden_size = encoder.family, encoder.text_hidden_size
        self.device, self.dtype = encoder.device, encoder.dtype

    def __call__(self, processor_output: Any) -> torch.Tensor:
        pixels = torch.as_tensor(processor_output["pixel_values"])
        with torch.inference_mode():
            pixels = pixels.to(device=self.device, dtype=self.dtype)
            return self.tower(pixels, processor_output["image_grid_thw"])


__all__ = [
    "ATTENTION_BACKENDS",
    "QwenTower",
    "SegmentPlan",
    "VarlenSegments",
    "QwenEncoder",
    "check_attention",
]
