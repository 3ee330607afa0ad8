"""Toy pictures: one or two coloured shapes on a plain background, and their descriptions.

The tiny checkpoints are trained on these pictures to answer "What's shown
here?" with the colours and shapes they see, left to right, e.g.
``"a red circle and a blue square"``. :func:`draw` turns such a description
into a picture, :func:`describe` gives a scene's description, and
:func:`sample_scene` draws random scenes from a seed, the same on every
machine.

Example:
    >>> from vlm_tutorial import toys
    >>> image = toys.draw("a red circle and a blue square")
    >>> image.size
    (448, 336)
    >>> toys.describe(toys.layout("a yellow triangle"))
    'a yellow triangle'
    >>> toys.describe(toys.sample_scene(0))
    'a yellow square and a blue triangle'
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

#: The colours a toy shape can have, with the RGB value it is painted in.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 30),
}

#: The shapes a toy picture can hold.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

#: Background of every toy picture.
BACKGROUND: tuple[int, int, int] = (255, 255, 255)

#: Default ``(width, height)`` of :func:`draw`, the notebooks' example size.
DEFAULT_SIZE: tuple[int, int] = (448, 336)

#: The ``(width, height)`` pairs :func:`sample_scene` picks from: aspect
#: ratios 4:3, 3:4, 7:5, 5:7 and 1:1, from 168 to 448 pixels a side. Only the
#: first two are larger than one 336-pixel Llama 4 tile (two tiles plus the
#: global one).
SIZES: tuple[tuple[int, int], ...] = (
    (448, 336),
    (336, 448),
    (336, 336),
    (336, 252),
    (252, 336),
    (336, 240),
    (240, 336),
    (280, 280),
    (224, 224),
    (224, 168),
    (168, 224),
)

#: Words joining two shapes in a description.
JOIN = " and "

#: The largest number of shapes in one picture.
MAX_SHAPES = 2


@dataclass(frozen=True)
class Shape:
    """One shape of a scene.

    Attributes:
        colour: a key of :data:`COLOURS`.
        kind: one of :data:`SHAPES`.
        x, y: its centre, as fractions of the picture's width and height.
        size: the side of its bounding box, as a fraction of the picture's
            shorter side.

    Example:
        >>> Shape("red", "circle", 0.5, 0.5, 0.4).words()
        'a red circle'
    """

    colour: str
    kind: str
    x: float
    y: float
    size: float

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; choose one of {sorted(COLOURS)}")
        if self.kind not in SHAPES:
            raise ValueError(f"unknown shape {self.kind!r}; choose one of {list(SHAPES)}")
        for name in ("x", "y", "size"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < 1:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")

    def words(self) -> str:
        """``"a <colour> <shape>"``."""
        return f"a {self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    """A toy picture: its size in pixels and its shapes (any order; described left to right).

    Example:
        >>> scene = Scene((448, 336), (Shape("blue", "square", 0.7, 0.5, 0.4),
        ...                            Shape("red", "circle", 0.3, 0.5, 0.4)))
        >>> describe(scene)
        'a red circle and a blue square'
    """

    size: tuple[int, int]
    shapes: tuple[Shape, ...]

    def __post_init__(self) -> None:
        _check_size(self.size)
        if not 1 <= len(self.shapes) <= MAX_SHAPES:
            raise ValueError(f"a toy scene holds 1 to {MAX_SHAPES} shapes, got {len(self.shapes)}")

    def image(self) -> Image.Image:
        """The scene drawn as a new RGB image (same as :func:`draw` of this scene)."""
        return draw(self)


def _check_size(size: object) -> tuple[int, int]:
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(side, int) and not isinstance(side, bool) for side in size)
        or min(size) < 28
    ):
        raise ValueError(
            f"size must be (width, height), two ints of at least 28, got {size!r}; "
            f"for example {DEFAULT_SIZE}"
        )
    return int(size[0]), int(size[1])


def describe(scene: Scene) -> str:
    """The scene's description: its shapes from left to right, joined by ``" and "``.

    Example:
        >>> describe(sample_scene(3))
        'a green triangle and a yellow square'
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"expected a toys.Scene, got {type(scene).__name__}")
    return JOIN.join(shape.words() for shape in sorted(scene.shapes, key=lambda s: s.x))


def parse(description: str) -> list[tuple[str, str]]:
    """``[(colour, shape), ...]`` of a description such as ``"a red circle and a blue square"``.

    Raises ``ValueError`` naming the known colours and shapes when a part is
    not ``"a <colour> <shape>"``.

    Example:
        >>> parse("a red circle and a blue square")
        [('red', 'circle'), ('blue', 'square')]
    """
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    parts = description.strip().split(JOIN)
    if len(parts) > MAX_SHAPES:
        raise ValueError(
            f"{description!r} names {len(parts)} shapes; a toy picture holds at most {MAX_SHAPES}"
        )
    found = []
    for part in parts:
        words = part.split()
        if len(words) != 3 or words[0] != "a" or words[1] not in COLOURS or words[2] not in SHAPES:
            raise ValueError(
                f"cannot draw {part!r} of {description!r}: write 'a <colour> <shape>' joined by "
                f"' and ', with a colour of {sorted(COLOURS)} and a shape of {list(SHAPES)}, "
                "e.g. 'a red circle and a blue square'"
            )
        found.append((words[1], words[2]))
    return found


def layout(description: str, size: tuple[int, int] = DEFAULT_SIZE) -> Scene:
    """The scene :func:`draw` paints for ``description``: shapes evenly spaced left to right.

    Example:
        >>> [shape.x for shape in layout("a red circle and a blue square").shapes]
        [0.28, 0.72]
    """
    size = _check_size(size)
    parts = parse(description)
    places = [(0.5, 0.5)] if len(parts) == 1 else [(0.28, 0.5), (0.72, 0.5)]
    scale = 0.5 if len(parts) == 1 else _pair_size(size, 0.4)
    shapes = tuple(
        Shape(colour, kind, x, y, scale)
        for (colour, kind), (x, y) in zip(parts, places, strict=True)
    )
    return Scene(size, shapes)


def _pair_size(size: tuple[int, int], wanted: float) -> float:
    """A shape size (fraction of the shorter side) that keeps two shapes apart and inside."""
    width, height = size
    return min(wanted, 0.4 * width / min(width, height))


def draw(description: str | Scene, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """Paint a toy picture from a description (``"a red circle and a blue square"``) or a Scene.

    The shapes appear left to right in the order the description names them.
    ``size`` is ``(width, height)``; it is ignored for a :class:`Scene`, which
    has its own.

    Example:
        >>> draw("a yellow triangle", size=(224, 168)).size
        (224, 168)
        >>> draw("a red circle").getpixel((224, 168))
        (220, 40, 40)
    """
    scene = description if isinstance(description, Scene) else layout(description, size)
    return _paint(scene, [COLOURS[shape.colour] for shape in scene.shapes], BACKGROUND)


def object_mask(scene: Scene) -> Image.Image:
    """Where each shape is: the first shape from the left in pure red, the second in pure green, on black.

    Same geometry as :func:`draw`; training uses it to tell which image
    tokens show which shape.

    Example:
        >>> object_mask(layout("a red circle and a blue square")).getpixel((323, 168))
        (0, 255, 0)
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"expected a toys.Scene, got {type(scene).__name__}")
    order = sorted(range(len(scene.shapes)), key=lambda i: scene.shapes[i].x)
    fills: list[tuple[int, int, int]] = [(0, 0, 0)] * len(scene.shapes)
    for rank, i in enumerate(order):
        fills[i] = ((255, 0, 0), (0, 255, 0))[rank]
    return _paint(scene, fills, (0, 0, 0))


def _paint(
    scene: Scene, fills: list[tuple[int, int, int]], background: tuple[int, int, int]
) -> Image.Image:
    width, height = scene.size
    image = Image.new("RGB", (width, height), background)
    pen = ImageDraw.Draw(image)
    short = min(width, height)
    for shape, fill in zip(scene.shapes, fills, strict=True):
        cx, cy, side = shape.x * width, shape.y * height, shape.size * short
        if shape.kind == "circle":
            half = side / 2
            pen.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill)
        elif shape.kind == "square":
            half = side / 2
            pen.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
        else:  # an upright triangle filling the bounding box
            half = side / 2
            pen.polygon(
                [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill
            )
    return image


def every_description() -> list[str]:
    """Every description of a sampled scene: one shape, or two of different colours (left first).

    Example:
        >>> descriptions = every_description()
        >>> len(descriptions), descriptions[0]
        (120, 'a blue circle')
    """
    ones = [f"a {colour} {kind}" for colour in sorted(COLOURS) for kind in SHAPES]
    pairs = [
        first + JOIN + second
        for first in ones
        for second in ones
        if first.split()[1] != second.split()[1]
    ]
    return ones + pairs


def sample_scene(seed: int, sizes: tuple[tuple[int, int], ...] = SIZES) -> Scene:
    """A random scene, the same for the same ``seed`` everywhere.

    One or two shapes (equally likely); two shapes have different colours,
    sit in the left and right parts of the picture and never overlap. The
    picture size is one of ``sizes``.

    Example:
        >>> sample_scene(7) == sample_scene(7)
        True
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    rng = random.Random(seed)
    size = sizes[rng.randrange(len(sizes))]
    width, height = _check_size(size)
    short = min(width, height)
    if rng.random() < 0.5:
        colour, kind = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
        side = rng.uniform(0.3, 0.6)
        shapes: tuple[Shape, ...] = (
            Shape(
                colour,
                kind,
                _centre(rng, side * short, width),
                _centre(rng, side * short, height),
                side,
            ),
        )
    else:
        colours = rng.sample(sorted(COLOURS), 2)
        kinds = [rng.choice(SHAPES), rng.choice(SHAPES)]
        side = _pair_size((width, height), rng.uniform(0.28, 0.42))
        pixels = side * short
        # Left shape in the left 45%, right shape in the right 45%: a gap between them.
        left = rng.uniform(pixels / 2 + 2, 0.45 * width - pixels / 2) / width
        right = rng.uniform(0.55 * width + pixels / 2, width - pixels / 2 - 2) / width
        shapes = tuple(
            Shape(colour, kind, x, _centre(rng, pixels, height), side)
            for colour, kind, x in zip(colours, kinds, (left, right), strict=True)
        )
        if rng.random() < 0.5:  # the list order says nothing about left and right
            shapes = shapes[::-1]
    return Scene((width, height), shapes)


def _centre(rng: random.Random, pixels: float, side: int) -> float:
    """A centre (fraction of ``side``) that keeps a shape of ``pixels`` inside, 2 px from the edge."""
    low, high = pixels / 2 + 2, side - pixels / 2 - 2
    return rng.uniform(low, max(low, high)) / side


def sample_scenes(count: int, seed: int, sizes: tuple[tuple[int, int], ...] = SIZES) -> list[Scene]:
    """``count`` scenes from one seed: :func:`sample_scene` of ``seed * 1_000_003 + i``.

    Example:
        >>> len(sample_scenes(5, seed=1))
        5
    """
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    return [sample_scene(seed * 1_000_003 + i, sizes) for i in range(count)]


__all__ = [
    "BACKGROUND",
    "COLOURS",
    "DEFAULT_SIZE",
    "JOIN",
    "MAX_SHAPES",
    "SHAPES",
    "SIZES",
    "Scene",
    "Shape",
    "describe",
    "draw",
    "every_description",
    "layout",
    "object_mask",
    "parse",
    "sample_scene",
    "sample_scenes",
]
