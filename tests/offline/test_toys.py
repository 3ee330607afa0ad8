"""Tests of vlm_tutorial.offline.toys: toy pictures and their descriptions."""

from __future__ import annotations

import pytest

from vlm_tutorial.images import example_image
from vlm_tutorial.offline import toys

RGB = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 30),
}
WHITE = (255, 255, 255)


def test_colours_and_shapes_cover_the_required_ones() -> None:
    assert {"red", "green", "blue", "yellow"} <= set(toys.COLOURS)
    assert {"circle", "square", "triangle"} <= set(toys.SHAPES)


def test_draw_places_the_shapes_left_to_right_in_the_described_order() -> None:
    image = toys.draw("a red circle and a blue square")
    assert image.size == (448, 336) and image.mode == "RGB"
    assert image.getpixel((int(0.28 * 448), 168)) == RGB["red"]
    assert image.getpixel((int(0.72 * 448), 168)) == RGB["blue"]
    assert image.getpixel((5, 5)) == WHITE and image.getpixel((224, 168)) == WHITE
    swapped = toys.draw("a blue square and a red circle")
    assert swapped.getpixel((int(0.28 * 448), 168)) == RGB["blue"]


def test_shapes_differ_in_outline() -> None:
    """Near the bounding box's corners a square is filled, a circle and a triangle are not."""
    size = (336, 336)
    half = 0.5 * 336 / 2
    corner = (int(168 - 0.9 * half), int(168 + 0.9 * half))  # bottom left, inside the box
    top = (168, int(168 - 0.95 * half))  # just under the top middle
    square = toys.draw("a green square", size=size)
    circle = toys.draw("a green circle", size=size)
    triangle = toys.draw("a green triangle", size=size)
    assert square.getpixel((int(168 - 0.85 * half), int(168 - 0.85 * half))) == RGB["green"]
    assert circle.getpixel((int(168 - 0.85 * half), int(168 - 0.85 * half))) == WHITE
    assert triangle.getpixel(corner) == RGB["green"]  # the base spans the box
    assert circle.getpixel(corner) == WHITE
    assert triangle.getpixel(top) == RGB["green"] and circle.getpixel(top) == RGB["green"]
    assert triangle.getpixel((int(168 - 0.5 * half), int(168 - 0.5 * half))) == WHITE


@pytest.mark.parametrize("size", [(448, 336), (224, 168), (168, 224), (1000, 200)])
def test_draw_keeps_the_size(size: tuple[int, int]) -> None:
    assert toys.draw("a yellow triangle", size=size).size == size


def test_describe_orders_by_position_not_by_list_order() -> None:
    left = toys.Shape("green", "triangle", 0.2, 0.5, 0.3)
    right = toys.Shape("yellow", "circle", 0.8, 0.5, 0.3)
    assert toys.describe(toys.Scene((448, 336), (right, left))) == (
        "a green triangle and a yellow circle"
    )


@pytest.mark.parametrize(
    "description", ["a red circle", "a blue square and a yellow triangle", "a green circle"]
)
def test_describe_of_layout_round_trips(description: str) -> None:
    assert toys.describe(toys.layout(description)) == description
    assert toys.describe(toys.layout(description, size=(168, 224))) == description


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("a purple circle", "purple"),
        ("a red hexagon", "hexagon"),
        ("red circle", "a <colour> <shape>"),
        ("a red circle and a blue square and a green triangle", "at most 2"),
        ("", "a <colour> <shape>"),
    ],
)
def test_parse_rejects_what_it_cannot_draw(bad: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        toys.draw(bad)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="size must be"):
        toys.draw("a red circle", size=(10, 10))
    with pytest.raises(TypeError, match="str"):
        toys.parse(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="colour"):
        toys.Shape("pink", "circle", 0.5, 0.5, 0.3)
    with pytest.raises(ValueError, match="fraction"):
        toys.Shape("red", "circle", 1.5, 0.5, 0.3)
    with pytest.raises(TypeError, match="seed"):
        toys.sample_scene("0")  # type: ignore[arg-type]


def test_sampler_is_deterministic_and_varied() -> None:
    first = toys.sample_scenes(200, seed=5)
    assert first == toys.sample_scenes(200, seed=5)
    assert first != toys.sample_scenes(200, seed=6)
    counts = {len(scene.shapes) for scene in first}
    assert counts == {1, 2}
    sizes = {scene.size for scene in first}
    assert len(sizes) >= 8
    assert len({round(w / h, 2) for w, h in sizes}) >= 4  # several aspect ratios
    words = " ".join(toys.describe(scene) for scene in first)
    for word in [*toys.COLOURS, *toys.SHAPES]:
        assert word in words


def test_two_sampled_shapes_are_apart_inside_and_differently_coloured() -> None:
    for scene in toys.sample_scenes(300, seed=9):
        width, height = scene.size
        short = min(width, height)
        boxes = []
        for shape in scene.shapes:
            half = shape.size * short / 2
            x, y = shape.x * width, shape.y * height
            assert half <= x <= width - half and half <= y <= height - half, scene
            boxes.append((x - half, x + half))
        if len(boxes) == 2:
            (a0, a1), (b0, b1) = sorted(boxes)
            assert a1 < b0, scene  # a gap between the shapes, left to right
            assert scene.shapes[0].colour != scene.shapes[1].colour


def test_object_mask_marks_each_shape_by_its_position() -> None:
    scene = toys.layout("a yellow triangle and a green circle")
    mask = toys.object_mask(scene)
    assert mask.getpixel((int(0.28 * 448), 200)) == (255, 0, 0)  # the left shape
    assert mask.getpixel((int(0.72 * 448), 168)) == (0, 255, 0)  # the right shape
    assert mask.getpixel((5, 5)) == (0, 0, 0)


@pytest.mark.parametrize("size", [(448, 336), (224, 168), (300, 900)])
def test_example_image_draws_the_toy_pictures_pixel_for_pixel(size) -> None:
    """The core's example_image draws what toys.draw draws, for every description."""
    assert example_image().tobytes() == toys.draw("a red circle and a blue square").tobytes()
    for description in toys.every_description():
        assert example_image(description, size).tobytes() == toys.draw(description, size).tobytes()
