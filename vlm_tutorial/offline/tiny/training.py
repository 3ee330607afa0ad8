"""Train a tiny checkpoint to name the colours and shapes in toy pictures.

The tiny models learn one chat turn, asked exactly as the notebooks ask it
(:func:`vlm_tutorial.prompts.build_prompt` with the checkpoint's own
processor and chat template):

* :data:`QUESTION` ``"What's shown here: <image>?"`` answered with the
  picture's description, e.g. ``"a red circle and a blue square"``;
* :data:`PAIR_QUESTION` ``"What's shown here: <image> and <image>?"``
  answered with both descriptions joined by :data:`PAIR_SEPARATOR`, e.g.
  ``"a red circle and a blue square; a yellow triangle"``;

each followed by the end-of-turn token, so greedy generation stops by
itself. The pictures come from :mod:`vlm_tutorial.offline.toys` and go through the
checkpoint's real processor, so the model sees exactly the ``pixel_values``,
grids and tiles that every image format of SGLang hands it.

The training set holds every description as :func:`vlm_tutorial.offline.toys.draw`
lays it out (the notebooks' pictures among them, see :data:`NOTEBOOK_PICTURES`)
and random scenes of :func:`vlm_tutorial.offline.toys.sample_scene`; the held-out
scenes of :func:`heldout_scenes` come from another seed. It has two stages
(see :class:`TrainingPlan`): the vision tower first, taught by linear probes
on its embeddings, then the language model on the fixed tower's embeddings.
Only the embedding rows of the tokens the task uses are trained; every other
row keeps its small initial values, so it never wins a greedy step.

Training is seeded and deterministic on one machine, and takes about two
minutes (Qwen2.5-VL) and three (Llama 4) on two CPU cores.

Example:
    >>> from vlm_tutorial.offline.tiny.training import answer_for
    >>> from vlm_tutorial.offline import toys
    >>> answer_for([toys.layout("a red circle and a blue square"), toys.layout("a yellow triangle")])
    'a red circle and a blue square; a yellow triangle'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vlm_tutorial.families import get_family
from vlm_tutorial.offline import toys
from vlm_tutorial.prompts import build_prompt

#: The notebooks' question about one picture.
QUESTION = "What's shown here: <image>?"

#: The question about two pictures in one request.
PAIR_QUESTION = "What's shown here: <image> and <image>?"

#: Between the answers for the pictures of :data:`PAIR_QUESTION`.
PAIR_SEPARATOR = "; "

#: The notebooks' two pictures: the example image and a second one with another answer.
NOTEBOOK_PICTURES = ("a red circle and a blue square", "a yellow triangle")


@dataclass(frozen=True)
class TrainingPlan:
    """How one family's tiny checkpoint is trained; part of the cache key.

    Training has two stages. First the vision tower (with Llama 4's
    projector) learns alone, from three linear probes on the image
    embeddings: each shape's kind from the mean embedding of its tokens, each
    token's class (background, or colour and shape), and each token's rank
    (background, the first shape from the left, the second). For Llama 4 this
    stage sees the last tile of each picture only, the one showing all of it.
    Then, with the tower fixed, its embeddings are computed once and the
    language model learns the answers, reading them as the
    precomputed-embedding format hands them over. The probes are dropped.

    Attributes:
        examples: random examples drawn (scenes, rendered and processed once),
            besides the laid-out pictures of :func:`training_scenes`.
        pair_fraction: share of the random examples asking :data:`PAIR_QUESTION`.
        layout_pairs: random pairs of laid-out pictures asked about together.
        notebook_copies: copies of the notebooks' two pictures asked about together.
        vision_steps, vision_batch, vision_lr: the first stage's AdamW steps,
            examples per step and peak learning rate.
        language_steps, language_batch, language_lr: the same for the second stage.
        warmup: steps of linear warm-up in each stage.
        decay_from: share of a stage's steps after which its rate decays (cosine) to 0.
        token_weight, rank_weight: weights of the token-class and rank probes
            beside the shape probe.
        background_weight: weight of background tokens in those two probes.
        negatives: untrained vocabulary rows sampled into each step's softmax.
        seed: seeds the scenes, the batches and the vision tower's initial weights.
        sizes: the picture sizes random scenes are drawn at.

    Example:
        >>> TrainingPlan().vision_batch
        16
    """

    examples: int = 800
    pair_fraction: float = 0.4
    layout_pairs: int = 20
    notebook_copies: int = 16
    vision_steps: int = 200
    vision_batch: int = 16
    vision_lr: float = 3e-3
    language_steps: int = 400
    language_batch: int = 16
    language_lr: float = 3e-3
    warmup: int = 20
    decay_from: float = 0.6
    token_weight: float = 0.2
    rank_weight: float = 1.0
    background_weight: float = 0.2
    negatives: int = 512
    seed: int = 0
    sizes: tuple[tuple[int, int], ...] = field(default=toys.SIZES)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for hashing and the checkpoint's info file."""
        return asdict(self)


#: The plan each family's ``tiny`` preset is trained with.
PLANS: dict[str, TrainingPlan] = {
    "qwen2_5_vl": TrainingPlan(vision_steps=200, language_steps=600),
    # Llama 4's prompts are longer (144 tokens a tile), so language steps cost
    # more; its tower needs more steps to tell the shapes apart.
    "llama4": TrainingPlan(vision_steps=300, language_steps=500),
}


def answer_for(scenes: Sequence[toys.Scene]) -> str:
    """The answer the tiny models learn for ``scenes``, one per image of the request.

    Example:
        >>> answer_for([toys.layout("a yellow triangle")])
        'a yellow triangle'
    """
    if not 1 <= len(scenes) <= 2:
        raise ValueError(f"the tiny models answer about 1 or 2 pictures, got {len(scenes)}")
    return PAIR_SEPARATOR.join(toys.describe(scene) for scene in scenes)


def question_for(num_images: int) -> str:
    """:data:`QUESTION` for one picture, :data:`PAIR_QUESTION` for two.

    Example:
        >>> question_for(2)
        "What's shown here: <image> and <image>?"
    """
    if num_images == 1:
        return QUESTION
    if num_images == 2:
        return PAIR_QUESTION
    raise ValueError(f"the tiny models answer about 1 or 2 pictures, got {num_images}")


@dataclass
class Example:
    """One processed training example: token ids, where the answer is, the image tensors.

    ``token_labels`` holds, for each image token in ``input_ids`` order, the
    class of what it shows: 0 for background, else ``1 + 3 * colour + shape``
    (indices into :data:`~vlm_tutorial.offline.toys.COLOURS` and :data:`~vlm_tutorial.offline.toys.SHAPES`);
    ``token_objects`` says which shape of which picture it belongs to.
    """

    input_ids: Any  # 1-D LongTensor
    answer_start: int  # index of the first answer token in input_ids
    pixel_values: Any
    token_labels: Any
    token_objects: Any  # per image token: 0 background, else 1 + 2 * image + rank from the left
    image_tokens: tuple[int, ...] = ()  # image tokens of each picture
    image_grid_thw: Any = None  # Qwen2.5-VL only


#: Classes of :attr:`Example.token_labels`: background, then every colour and shape.
TOKEN_CLASSES = 1 + len(toys.COLOURS) * len(toys.SHAPES)


def _shape_class(shape: toys.Shape) -> int:
    return (
        1
        + sorted(toys.COLOURS).index(shape.colour) * len(toys.SHAPES)
        + toys.SHAPES.index(shape.kind)
    )


def _coverage(processor: Any, masks: list[Any]) -> Any:
    """Per image token, the share of its pixels that the first and the second shape cover.

    The masks (:func:`vlm_tutorial.offline.toys.object_mask`) go through the same
    image processor as the pictures, so each row lines up with an image token.
    """
    import torch

    image_processor = processor.image_processor
    pixels = image_processor(images=masks, return_tensors="pt")["pixel_values"].float()
    mean = torch.tensor(image_processor.image_mean)
    std = torch.tensor(image_processor.image_std)
    if hasattr(image_processor, "merge_size"):  # Qwen2.5-VL: patches in 2x2 merge units
        merge = image_processor.merge_size
        patch = image_processor.patch_size
        values = pixels.view(pixels.shape[0], 3, -1, patch, patch)
        values = values * std.view(1, 3, 1, 1, 1) + mean.view(1, 3, 1, 1, 1)
        share = values.mean(dim=(2, 3, 4))[:, :2]  # red: first shape, green: second
        return share.view(-1, merge * merge, 2).mean(dim=1)
    # Llama 4: 336x336 tiles of 14 px patches, merged 2x2 by the model's pixel shuffle.
    from transformers.models.llama4.modeling_llama4 import pixel_shuffle

    values = pixels * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    patch = processor.patch_size
    per_patch = torch.nn.functional.avg_pool2d(values[:, :2], patch)  # [tiles, 2, 24, 24]
    tiles = per_patch.shape[0]
    shares = []
    for channel in range(2):  # the model's own pixel shuffle, one channel at a time
        flat = per_patch[:, channel].reshape(tiles, -1, 1)
        shares.append(pixel_shuffle(flat, 0.5).mean(dim=-1))
    return torch.stack(shares, dim=-1).reshape(-1, 2)


def encode_example(processor: Any, scenes: Sequence[toys.Scene]) -> Example:
    """Render ``scenes`` and run the checkpoint's processor on prompt + answer + end of turn.

    Example:
        >>> ex = encode_example(processor, [toys.sample_scene(0)])  # doctest: +SKIP
        >>> processor.tokenizer.decode(ex.input_ids[ex.answer_start:])  # doctest: +SKIP
        'a yellow square and a blue triangle<|im_end|>'
    """
    import torch

    tokenizer = processor.tokenizer
    prompt = build_prompt(processor, question_for(len(scenes)), num_images=len(scenes))
    target = answer_for(scenes) + tokenizer.eos_token
    target_ids = tokenizer.encode(target, add_special_tokens=False)
    bos = tokenizer.bos_token
    kwargs = {"add_special_tokens": False} if bos and prompt.startswith(bos) else {}
    images = [scene.image() for scene in scenes]
    inputs = processor(text=[prompt + target], images=images, return_tensors="pt", **kwargs)
    ids = inputs["input_ids"][0]
    start = len(ids) - len(target_ids)
    if ids[start:].tolist() != target_ids:  # pragma: no cover - a tokenizer change
        raise RuntimeError(f"the answer {target!r} tokenizes differently after the prompt")
    labels, objects, counts = [], [], []
    for i, scene in enumerate(scenes):
        share = _coverage(processor, [toys.object_mask(scene)])
        shapes = sorted(scene.shapes, key=lambda s: s.x)
        classes = torch.tensor([0] + [_shape_class(s) for s in shapes] + [0] * (2 - len(shapes)))
        best = share.max(dim=1)
        which = torch.where(best.values >= 0.25, best.indices + 1, 0)
        labels.append(classes[which])
        objects.append(torch.where(which > 0, which + 2 * i, 0))
        counts.append(len(which))
    return Example(
        input_ids=ids,
        answer_start=start,
        # Half precision keeps a thousand pictures in memory; Llama 4's processor
        # returns bfloat16 itself.
        pixel_values=inputs["pixel_values"].to(torch.float16),
        token_labels=torch.cat(labels),
        token_objects=torch.cat(objects),
        image_tokens=tuple(counts),
        image_grid_thw=inputs.get("image_grid_thw"),
    )


def training_scenes(plan: TrainingPlan) -> list[list[toys.Scene]]:
    """The pictures of each training example (one or two scenes), from ``plan.seed``.

    First every description of :func:`~vlm_tutorial.offline.toys.every_description`
    as :func:`~vlm_tutorial.offline.toys.draw` lays it out at its default size (so any
    ``toys.draw(description)`` picture is one the models know), then
    ``plan.notebook_copies`` copies of the notebooks' pair
    (:data:`NOTEBOOK_PICTURES`) and ``plan.layout_pairs`` random pairs of such
    pictures, then ``plan.examples`` random examples from scenes of seeds
    ``plan.seed * 1_000_003 + i``; the held-out set of :func:`heldout_scenes`
    uses another seed, so the two never share a scene.

    Example:
        >>> len(training_scenes(TrainingPlan(examples=8, layout_pairs=2, notebook_copies=1)))
        131
    """
    import random

    descriptions = toys.every_description()
    examples = [[toys.layout(description)] for description in descriptions]
    rng = random.Random(plan.seed)
    pairs = [NOTEBOOK_PICTURES] * plan.notebook_copies + [
        tuple(rng.sample(descriptions, 2)) for _ in range(plan.layout_pairs)
    ]
    examples += [[toys.layout(first), toys.layout(second)] for first, second in pairs]
    pool = toys.sample_scenes(2 * plan.examples, seed=plan.seed, sizes=plan.sizes)
    for i in range(plan.examples):
        first = pool[2 * i]
        examples.append([first, pool[2 * i + 1]] if rng.random() < plan.pair_fraction else [first])
    return examples


#: Seed of the held-out scenes (never used for training).
HELDOUT_SEED = 1_000


def heldout_scenes(count: int = 60) -> list[toys.Scene]:
    """A fixed set of scenes the models never trained on (seed :data:`HELDOUT_SEED`).

    Example:
        >>> heldout_scenes(3) == heldout_scenes(3)
        True
    """
    return toys.sample_scenes(count, seed=HELDOUT_SEED)


class _RowEmbedding:
    """Trainable copies of the embedding rows of the task's tokens; the rest stays frozen."""

    def __init__(self, weight: Any, used: Any) -> None:
        import torch

        self.used = used
        self.remap = torch.full((weight.shape[0],), -1, dtype=torch.long)
        self.remap[used] = torch.arange(len(used))
        self.rows = torch.nn.Parameter(weight.detach()[used].clone())

    def embed(self, input_ids: Any) -> Any:
        return self.rows[self.remap[input_ids]]

    def write_back(self, weight: Any) -> None:
        import torch

        with torch.no_grad():
            weight[self.used] = self.rows.detach()


def _vision_tower(model: Any, family: str) -> list[Any]:
    """The modules that turn pixels into image embeddings (trained in the first stage)."""
    if family == "qwen2_5_vl":
        return [model.model.visual]
    return [model.vision_model, model.multi_modal_projector]


def _embed_images(model: Any, family: str, examples: Sequence[Example]) -> Any:
    """Image embeddings of ``examples``' pictures, in the order of their image tokens."""
    import torch

    pixel_values = torch.cat([ex.pixel_values.float() for ex in examples])
    if family == "qwen2_5_vl":
        grid = torch.cat([ex.image_grid_thw for ex in examples])
        pooled = model.model.get_image_features(pixel_values, grid).pooler_output
        return torch.cat(list(pooled)) if isinstance(pooled, tuple | list) else pooled
    features = model.vision_model(pixel_values).last_hidden_state
    return model.multi_modal_projector(features.reshape(-1, features.shape[-1]))


def _pooled_shapes(probe: Any, image_embeds: Any, labels: Any, objects: Any) -> tuple[Any, Any]:
    """The shape probe's logits for each shape's mean token embedding, and the true kinds."""
    import torch

    ids, index = torch.unique(objects, return_inverse=True)
    sums = torch.zeros(len(ids), image_embeds.shape[1]).index_add(0, index, image_embeds)
    counts = torch.zeros(len(ids)).index_add(0, index, torch.ones(len(objects)))
    kinds = torch.zeros(len(ids), dtype=torch.long).scatter(
        0, index, (labels - 1) % len(toys.SHAPES)
    )
    keep = ids > 0
    return probe(sums[keep] / counts[keep, None]), kinds[keep]


def _init_vision(model: Any, family: str, seed: int) -> None:
    """Vision weight matrices to N(0, 1 / fan_in): a tower that learns shapes in far fewer steps."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in _vision_tower(model, family):
            for _, param in sorted(module.named_parameters(), key=lambda kv: kv[0]):
                if param.ndim >= 2:
                    fan_in = param[0].numel()
                    param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)


def _schedule(steps: int, warmup: int, decay_from: float) -> Callable[[int], float]:
    decay_start = int(decay_from * steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step < decay_start:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - decay_start) / max(1, steps - decay_start)))

    return factor


class _Batches:
    """Seeded batches of indices: every item once per epoch, in a new order each epoch.

    With ``lengths``, each batch holds items of similar length (a shuffled
    epoch is cut into groups of 4 batches, each group sorted by length), so
    that less of a padded batch is padding.
    """

    def __init__(
        self, count: int, size: int, gen: Any, lengths: Sequence[int] | None = None
    ) -> None:
        self.count, self.size, self.gen, self.lengths = count, size, gen, lengths
        self.batches: list[list[int]] = []

    def next(self) -> list[int]:
        import torch

        if not self.batches:
            order = torch.randperm(self.count, generator=self.gen).tolist()
            if self.lengths is not None:
                group = 4 * self.size
                lengths = self.lengths
                order = [
                    i
                    for start in range(0, len(order), group)
                    for i in sorted(order[start : start + group], key=lambda i: lengths[i])
                ]
            batches = [order[i : i + self.size] for i in range(0, len(order), self.size)]
            batches = [b for b in batches if len(b) == self.size] or batches
            shuffle = torch.randperm(len(batches), generator=self.gen).tolist()
            self.batches = [batches[i] for i in shuffle]
        return self.batches.pop()


def _probe_inputs(model: Any, family: str, examples: Sequence[Example]) -> tuple[Any, Any, Any]:
    """Image embeddings with their token classes and shape ids (unique in the batch).

    For Llama 4 only the last tile of each picture is used: the global tile
    (or the only one), which shows the whole picture. The other tiles are
    crops of it, and skipping them makes this stage several times cheaper.
    """
    import torch

    labels, objects = [], []
    for row, ex in enumerate(examples):
        labels.append(ex.token_labels)
        objects.append(torch.where(ex.token_objects > 0, ex.token_objects + 4 * row, 0))
    if family == "qwen2_5_vl":
        return _embed_images(model, family, examples), torch.cat(labels), torch.cat(objects)
    tile = 144  # image tokens of one 336x336 tile after the pixel shuffle
    pixels, keep = [], []
    for ex, ex_labels, ex_objects in zip(examples, labels, objects, strict=True):
        first = 0
        for count in ex.image_tokens:
            last = (first + count) // tile - 1
            pixels.append(ex.pixel_values[last : last + 1].float())
            keep.append(
                (
                    ex_labels[first + count - tile : first + count],
                    ex_objects[first + count - tile : first + count],
                )
            )
            first += count
    features = model.vision_model(torch.cat(pixels)).last_hidden_state
    embeds = model.multi_modal_projector(features.reshape(-1, features.shape[-1]))
    return embeds, torch.cat([k[0] for k in keep]), torch.cat([k[1] for k in keep])


def _step(optimizer: Any, scheduler: Any, params: Any, loss: Any) -> None:
    """One AdamW step on ``loss``, gradients clipped to norm 1, then the rate schedule."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()


def _train_vision(
    model: Any,
    family: str,
    examples: Sequence[Example],
    plan: TrainingPlan,
    gen: Any,
    log: Callable[[str], None] | None,
) -> list[float]:
    """Stage 1: the vision tower learns from three linear probes (dropped afterwards)."""
    import torch

    hidden = model.config.get_text_config().hidden_size
    token_probe = torch.nn.Linear(hidden, TOKEN_CLASSES)
    rank_probe = torch.nn.Linear(hidden, 3)  # background, first shape from the left, second
    shape_probe = torch.nn.Linear(hidden, len(toys.SHAPES))
    weights = torch.ones(TOKEN_CLASSES)
    weights[0] = plan.background_weight
    rank_weights = torch.tensor([plan.background_weight, 1.0, 1.0])
    params = [p for module in _vision_tower(model, family) for p in module.parameters()]
    params += [*token_probe.parameters(), *rank_probe.parameters(), *shape_probe.parameters()]
    optimizer = torch.optim.AdamW(params, lr=plan.vision_lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(plan.vision_steps, plan.warmup, plan.decay_from)
    )
    batches = _Batches(len(examples), plan.vision_batch, gen)
    losses = []
    for step in range(plan.vision_steps):
        picked = [examples[i] for i in batches.next()]
        embeds, labels, objects = _probe_inputs(model, family, picked)
        ranks = torch.where(objects > 0, (objects - 1) % 2 + 1, 0)
        token_loss = torch.nn.functional.cross_entropy(token_probe(embeds), labels, weight=weights)
        rank_loss = torch.nn.functional.cross_entropy(
            rank_probe(embeds), ranks, weight=rank_weights
        )
        shape_logits, kinds = _pooled_shapes(shape_probe, embeds, labels, objects)
        shape_loss = torch.nn.functional.cross_entropy(shape_logits, kinds)
        loss = shape_loss + plan.token_weight * token_loss + plan.rank_weight * rank_loss
        _step(optimizer, scheduler, params, loss)
        losses.append(float(shape_loss.detach()))
        if log is not None and (step % 25 == 0 or step == plan.vision_steps - 1):
            log(
                f"vision step {step:4d}  shape probe {losses[-1]:.4f}  token probe "
                f"{float(token_loss.detach()):.4f}  rank probe {float(rank_loss.detach()):.4f}"
            )
    return losses


def _collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids`` and mask, and (row, position, next token) of every answer token."""
    import torch

    length = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    rows, positions, tokens = [], [], []
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[row, :n] = ex.input_ids
        mask[row, :n] = 1
        for pos in range(ex.answer_start - 1, n - 1):  # position p predicts token p + 1
            rows.append(row)
            positions.append(pos)
            tokens.append(int(ex.input_ids[pos + 1]))
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "rows": torch.tensor(rows),
        "positions": torch.tensor(positions),
        "tokens": torch.tensor(tokens),
    }


def _language_hidden(
    model: Any, family: str, batch: Mapping[str, Any], embeds: Any, grid: Any
) -> Any:
    """Last hidden states of the language model, image embeddings in place (as format 3 does)."""
    ids = batch["input_ids"]
    if family == "qwen2_5_vl":
        # The model computes the 3-D rope positions from ids, grids and token types.
        return model.model(
            input_ids=ids,
            inputs_embeds=embeds,
            attention_mask=batch["attention_mask"],
            image_grid_thw=grid,
            mm_token_type_ids=(ids == model.config.image_token_id).int(),
            use_cache=False,
        ).last_hidden_state
    return model.language_model.model(
        inputs_embeds=embeds, attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state


def _train_language(
    model: Any,
    processor: Any,
    family: str,
    examples: Sequence[Example],
    image_embeds: Sequence[Any],
    plan: TrainingPlan,
    gen: Any,
    log: Callable[[str], None] | None,
) -> list[float]:
    """Stage 2: the language model learns the answers; the vision tower stays as it is."""
    import torch

    used = torch.unique(torch.cat([ex.input_ids for ex in examples]))
    in_weight = model.get_input_embeddings().weight
    out_weight = model.get_output_embeddings().weight
    tied = in_weight is out_weight
    rows_in = _RowEmbedding(in_weight, used)
    rows_out = rows_in if tied else _RowEmbedding(out_weight, used)
    untrained = torch.ones(out_weight.shape[0], dtype=torch.bool)
    untrained[used] = False
    untrained_ids = torch.nonzero(untrained).squeeze(1)
    vision = {id(p) for module in _vision_tower(model, family) for p in module.parameters()}
    embeddings = {id(in_weight), id(out_weight)}
    params = [p for p in model.parameters() if id(p) not in vision | embeddings]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    params += [rows_in.rows] + ([] if tied else [rows_out.rows])
    optimizer = torch.optim.AdamW(params, lr=plan.language_lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(plan.language_steps, plan.warmup, plan.decay_from)
    )
    image_token = model.config.image_token_id
    pad_id = int(processor.tokenizer.pad_token_id)
    batches = _Batches(
        len(examples), plan.language_batch, gen, [len(ex.input_ids) for ex in examples]
    )
    losses = []
    for step in range(plan.language_steps):
        picked = batches.next()
        batch = _collate([examples[i] for i in picked], pad_id)
        ids = batch["input_ids"]
        embeds = rows_in.embed(ids).masked_scatter(
            (ids == image_token).unsqueeze(-1), torch.cat([image_embeds[i] for i in picked])
        )
        grid = (
            torch.cat([examples[i].image_grid_thw for i in picked])
            if family == "qwen2_5_vl"
            else None
        )
        hidden = _language_hidden(model, family, batch, embeds, grid)
        h = hidden[batch["rows"], batch["positions"]]
        negatives = untrained_ids[
            torch.randint(len(untrained_ids), (plan.negatives,), generator=gen)
        ]
        logits = torch.cat([h @ rows_out.rows.T, h @ out_weight[negatives].T], dim=1)
        loss = torch.nn.functional.cross_entropy(logits, rows_out.remap[batch["tokens"]])
        _step(optimizer, scheduler, params, loss)
        losses.append(float(loss.detach()))
        if log is not None and (step % 50 == 0 or step == plan.language_steps - 1):
            log(f"language step {step:4d}  answer loss {losses[-1]:.4f}")
    rows_in.write_back(in_weight)
    if not tied:
        rows_out.write_back(out_weight)
    return losses


@dataclass
class TrainingReport:
    """What a training run did: its plan, its losses and how long each part took."""

    plan: dict[str, Any]
    vision_losses: list[float]
    answer_losses: list[float]
    prepare_seconds: float
    vision_seconds: float
    language_seconds: float

    @property
    def seconds(self) -> float:
        return self.prepare_seconds + self.vision_seconds + self.language_seconds

    def as_dict(self) -> dict[str, Any]:
        """A summary for the checkpoint's info file (final losses are means of the last 10 steps)."""

        def tail(values: list[float]) -> float | None:
            return round(sum(values[-10:]) / len(values[-10:]), 4) if values else None

        return {
            "plan": self.plan,
            "last_shape_probe_loss": tail(self.vision_losses),
            "last_loss": tail(self.answer_losses),
            "prepare_seconds": round(self.prepare_seconds, 2),
            "vision_seconds": round(self.vision_seconds, 2),
            "language_seconds": round(self.language_seconds, 2),
            "seconds": round(self.seconds, 2),
        }


def train_model(
    model: Any,
    processor: Any,
    family: str,
    plan: TrainingPlan,
    log: Callable[[str], None] | None = None,
) -> TrainingReport:
    """Train ``model`` (in place, float32) on toy pictures through ``processor``; return a report.

    Seeded: the same plan gives the same weights on one machine. Only the
    embedding rows of the tokens in the training prompts and answers change;
    the other rows keep their initial values.

    Example:
        >>> report = train_model(model, processor, "qwen2_5_vl", PLANS["qwen2_5_vl"])  # doctest: +SKIP
        >>> report.as_dict()["last_loss"] < 0.01  # doctest: +SKIP
        True
    """
    import torch

    family = get_family(family).name
    deterministic = torch.are_deterministic_algorithms_enabled()
    # Some CPU backward kernels sum in thread order unless asked not to.
    torch.use_deterministic_algorithms(True)
    try:
        return _train(model, processor, family, plan, log)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def _train(
    model: Any,
    processor: Any,
    family: str,
    plan: TrainingPlan,
    log: Callable[[str], None] | None,
) -> TrainingReport:
    import torch

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(plan.seed)
    scenes = training_scenes(plan)
    if log is not None:
        log(f"{family}: rendering and processing {len(scenes)} training examples")
    examples = [encode_example(processor, pictures) for pictures in scenes]
    prepared = time.perf_counter()

    for p in model.parameters():
        p.requires_grad_(False)
    _init_vision(model, family, plan.seed)
    model.train()
    for module in _vision_tower(model, family):
        for p in module.parameters():
            p.requires_grad_(True)
    vision_losses = _train_vision(model, family, examples, plan, gen, log)
    vision_done = time.perf_counter()

    with torch.no_grad():
        image_embeds = []
        for first in range(0, len(examples), plan.vision_batch):
            chunk = examples[first : first + plan.vision_batch]
            embeds = _embed_images(model, family, chunk)
            sizes = [len(ex.token_labels) for ex in chunk]
            image_embeds += list(torch.split(embeds, sizes))
    answer_losses = _train_language(
        model, processor, family, examples, image_embeds, plan, gen, log
    )

    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return TrainingReport(
        plan=plan.as_dict(),
        vision_losses=vision_losses,
        answer_losses=answer_losses,
        prepare_seconds=prepared - start,
        vision_seconds=vision_done - prepared,
        language_seconds=time.perf_counter() - vision_done,
    )
