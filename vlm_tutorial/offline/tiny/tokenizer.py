"""A byte-level BPE tokenizer with a family's real special tokens at their real ids.

The real vocabularies are not available offline, so the ordinary tokens are
the 256 byte-level symbols, then the pieces of a few whole words
(:data:`WHOLE_WORDS`: the toy pictures' answers, the notebooks' question and
the chat templates' words, each one token thanks to its BPE merges), then
filler tokens (`` t<id>``) up to the first special id. The
special tokens sit at exactly the ids of the real checkpoint, and fillers pad
the table to the config's ``vocab_size``, so every id a model can generate
decodes to text.

The special tokens are part of the BPE vocabulary itself *and* registered as
added tokens: transformers then finds them at their ids instead of appending
them after the vocabulary (which is how ids used to move).

Example:
    >>> tok = build_tokenizer("qwen2_5_vl")
    >>> tok.token_to_id("<|image_pad|>"), tok.get_vocab_size()
    (151655, 151936)
    >>> len(tok.encode("a red circle and a blue square").ids)
    7
"""

from __future__ import annotations

from functools import lru_cache
from itertools import groupby

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers.models import BPE

from vlm_tutorial.families import get_family
from vlm_tutorial.offline.toys import COLOURS, JOIN, SHAPES

from .presets import VOCAB

#: Qwen2's pre-tokenizer split (transformers' ``tokenization_qwen2.py``).
QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

#: Llama 4's pre-tokenizer split (``O200K_PATTERN`` of transformers'
#: ``convert_llama4_weights_to_hf.py``).
LLAMA4_SPLIT = r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


#: Words (as the pre-tokenizer cuts them, with their leading space) that
#: encode to one token each: the toy answers ("a red circle and a blue
#: square" is 7 tokens), the notebooks' question "What's shown here:" and the
#: words of the chat templates.
WHOLE_WORDS: tuple[str, ...] = (
    "a",
    " a",
    JOIN.rstrip(),  # " and"
    *(f" {colour}" for colour in COLOURS),
    *(f" {shape}" for shape in SHAPES),
    "What",
    "'s",
    " shown",
    " here",
    "system",
    "You",
    " are",
    " helpful",
    " assistant",
    "user",
    "assistant",
    "\n\n",
)


@lru_cache(maxsize=1)
def byte_symbols() -> tuple[str, ...]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2's table).

    Example:
        >>> byte_symbols()[ord(" ")]
        'Ġ'
    """
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


def special_tokens(family: str) -> tuple[tuple[int, str, bool], ...]:
    """``(id, text, special)`` for each added token of ``family``, in id order.

    Example:
        >>> dict((t, i) for i, t, _ in special_tokens("llama4"))["<|patch|>"]
        200092
    """
    return get_family(family).special_tokens


def _symbols(word: str) -> list[str]:
    """``word``'s bytes as byte-level symbols (``" red"`` -> ``['Ġ', 'r', 'e', 'd']``)."""
    table = byte_symbols()
    return [table[b] for b in word.encode("utf-8")]


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one pre-token: merge the best-ranked adjacent pair until none is left."""
    parts = list(symbols)
    while len(parts) > 1:
        pairs = [
            (ranks.get(pair, len(ranks)), i)
            for i, pair in enumerate(zip(parts, parts[1:], strict=False))
        ]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


@lru_cache(maxsize=1)
def word_merges() -> tuple[tuple[str, str], ...]:
    """The BPE merges that make each of :data:`WHOLE_WORDS` one token, in rank order.

    Built word by word: while the merges so far leave a word in several
    pieces, its first two pieces get a new merge. A later merge never changes
    how an earlier word is cut, because BPE prefers earlier merges.

    Example:
        >>> word_merges()[:3]
        (('Ġ', 'a'), ('Ġa', 'n'), ('Ġan', 'd'))
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in WHOLE_WORDS:
        while len(parts := _apply_merges(_symbols(word), ranks)) > 1:
            pair = (parts[0], parts[1])
            ranks[pair] = len(merges)
            merges.append(pair)
    return tuple(merges)


def build_vocab(family: str) -> dict[str, int]:
    """The full token table: bytes, word pieces, fillers, the real specials, fillers up to ``vocab_size``.

    Example:
        >>> len(build_vocab("llama4"))
        202048
        >>> build_vocab("qwen2_5_vl")["Ġcircle"] < 300
        True
    """
    sizes = VOCAB[get_family(family).name]
    specials = {i: text for i, text, _ in special_tokens(family)}
    pieces = [a + b for a, b in word_merges()]
    space = byte_symbols()[ord(" ")]
    vocab: dict[str, int] = {}
    for i in range(sizes["vocab_size"]):
        if i < 256:
            vocab[byte_symbols()[i]] = i
        elif i < 256 + len(pieces):
            vocab[pieces[i - 256]] = i
        elif i in specials:
            vocab[specials[i]] = i
        else:
            vocab[f"{space}t{i}"] = i
    return vocab


def build_tokenizer(family: str) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` for ``family`` (byte-level BPE, real special ids).

    Example:
        >>> tok = build_tokenizer("llama4")
        >>> tok.encode("hi").ids[:1] == [tok.token_to_id("<|begin_of_text|>")]
        True
    """
    name = get_family(family).name
    tok = Tokenizer(
        BPE(
            vocab=build_vocab(name),
            merges=list(word_merges()),
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    split = QWEN_SPLIT if name == "qwen2_5_vl" else LLAMA4_SPLIT
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    if name == "qwen2_5_vl":
        tok.normalizer = normalizers.NFC()
    # Added in id order; each is already in the vocabulary, so ids stay put.
    for special, group in groupby(special_tokens(name), key=lambda entry: entry[2]):
        added = [
            AddedToken(text, special=special, normalized=False, lstrip=False, rstrip=False)
            for _, text, _ in group
        ]
        (tok.add_special_tokens if special else tok.add_tokens)(added)
    if name == "llama4":
        bos = "<|begin_of_text|>"
        tok.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{bos} $A",
                    pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                    special_tokens=[(bos, tok.token_to_id(bos))],
                ),
            ]
        )
    return tok


__all__ = [
    "WHOLE_WORDS",
    "build_tokenizer",
    "build_vocab",
    "byte_symbols",
    "special_tokens",
    "word_merges",
]
