"""vlm_tutorial.images: every input kind, the modes SGLang meets, every refusal, the example picture.

URLs are served from 127.0.0.1 inside the test process; nothing touches the network. No test
depends on a wall-clock limit: calls that could hang run under a guard far above their time.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm_tutorial import images
from vlm_tutorial.errors import (
    ImageDecodeError,
    ImageLoadError,
    ImageTooLargeError,
    UnsupportedImageSourceError,
)
from vlm_tutorial.images import (
    example_image,
    image_to_base64,
    image_to_data_url,
    load_image,
    serve_images,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
GUARD = 60  # seconds: a hang guard, far above what any call below takes


@pytest.fixture(scope="module")
def house() -> Image.Image:
    """A 64 x 48 RGB image of seeded noise (its PNG is about 9 KB)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="module")
def house_png(house: Image.Image) -> bytes:
    return encode(house, "PNG")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, house_png: bytes) -> Iterator[str]:
    """serve_images over a folder holding house.png, big.png and page.html."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "house.png").write_bytes(house_png)
    example_image().save(folder / "big.png")
    (folder / "page.html").write_text("<html><body>Not an image</body></html>")
    with serve_images(folder) as base_url:
        yield base_url


def encode(image: Image.Image, fmt: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def guarded(call: Callable[[], object]) -> BaseException | object:
    """Run ``call`` in a thread; fail if it is still running after GUARD seconds."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD)
    assert outcome, f"still running after {GUARD} s: the deadline was not kept"
    return outcome[0]


# ---------------------------------------------------------------- input kinds


@pytest.mark.parametrize(
    "kind",
    [
        "pil",
        "str",
        "pathlib",
        "http",
        "bytes",
        "bytearray",
        "memoryview",
        "b64",
        "b64_wrapped",
        "data",
    ],
)
def test_every_input_kind_gives_the_same_rgb_pixels(
    kind: str, house: Image.Image, house_png: bytes, served: str, tmp_path: Path
) -> None:
    path = tmp_path / "house.png"
    path.write_bytes(house_png)
    b64 = base64.b64encode(house_png).decode()
    source = {
        "pil": house,
        "str": str(path),
        "pathlib": path,
        "http": f"{served}/house.png",
        "bytes": house_png,
        "bytearray": bytearray(house_png),
        "memoryview": memoryview(house_png),
        "b64": b64,
        "b64_wrapped": base64.encodebytes(house_png).decode(),  # MIME line breaks
        "data": f"data:image/png;base64,{b64}",
    }[kind]
    image = load_image(source)
    assert (image.mode, image.size) == ("RGB", (64, 48))
    assert image.tobytes() == house.tobytes()


def test_a_relative_path_without_suffix_is_read_from_the_working_directory(
    house_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "picture").write_bytes(house_png)
    monkeypatch.chdir(tmp_path)
    assert load_image("picture").size == (64, 48)


def test_an_existing_file_wins_over_base64(
    house_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageDecodeError, match="read as base64.*not an image"):
        load_image("abcd")  # valid base64 text, of 3 bytes that are no image
    (tmp_path / "abcd").write_bytes(house_png)
    assert load_image("abcd").size == (64, 48)


def test_jpeg_base64_starting_with_a_slash_is_base64_not_a_path(house: Image.Image) -> None:
    data = encode(house, "JPEG")
    b64 = base64.b64encode(data).decode()
    assert b64.startswith("/9j/")
    assert load_image(b64).tobytes() == Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def test_the_result_is_a_new_image_and_the_input_is_unchanged() -> None:
    rgba = Image.new("RGBA", (4, 4), (*RED, 0))
    before = rgba.tobytes()
    assert load_image(rgba) is not rgba
    assert rgba.mode == "RGBA" and rgba.tobytes() == before
    rgb = Image.new("RGB", (4, 4), RED)
    copy = load_image(rgb)
    copy.putpixel((0, 0), BLUE)
    assert rgb.getpixel((0, 0)) == RED


# ---------------------------------------------------------------- modes and EXIF


def palette_image() -> Image.Image:
    image = Image.new("P", (2, 2), 0)
    image.putpalette([*RED, *BLUE] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), 1)
    return image


MODES = {  # name: (image, {(x, y): expected RGB})
    "RGBA opaque": (lambda: Image.new("RGBA", (2, 2), (*RED, 255)), {(0, 0): RED}),
    "RGBA transparent keeps its colour": (
        lambda: Image.new("RGBA", (2, 2), (*BLUE, 0)),
        {(0, 0): BLUE},
    ),
    "LA": (lambda: Image.new("LA", (2, 2), (100, 0)), {(0, 0): (100, 100, 100)}),
    "L": (lambda: Image.new("L", (2, 2), 77), {(0, 0): (77, 77, 77)}),
    "1": (lambda: Image.new("1", (2, 2), 1), {(0, 0): WHITE}),
    "P": (palette_image, {(0, 0): BLUE, (1, 1): RED}),
    "CMYK": (lambda: Image.new("CMYK", (2, 2), (0, 255, 255, 0)), {(0, 0): RED}),
}


@pytest.mark.parametrize("case", list(MODES))
def test_every_mode_comes_out_rgb_as_sglang_converts_it(case: str, tmp_path: Path) -> None:
    make, expected = MODES[case]
    for source in (make(), encode(make(), "TIFF")):  # in memory, and as a file's bytes
        image = load_image(source)
        assert image.mode == "RGB"
        assert {xy: image.getpixel(xy) for xy in expected} == expected


def exif_jpeg(orientation: int | None) -> bytes:
    """A 40 x 20 JPEG, left half red, right half blue, with an optional EXIF orientation."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def close_to(pixel: object, rgb: tuple[int, int, int]) -> bool:
    return bool(np.abs(np.subtract(pixel, rgb)).max() < 40)


def test_exif_orientation_is_applied_and_its_absence_changes_nothing() -> None:
    turned = load_image(exif_jpeg(6))  # 6: shown turned 90 degrees clockwise
    assert turned.size == (20, 40)
    assert close_to(turned.getpixel((10, 5)), RED) and close_to(turned.getpixel((10, 35)), BLUE)
    plain = load_image(exif_jpeg(None))
    assert plain.size == (40, 20)
    assert close_to(plain.getpixel((5, 10)), RED) and close_to(plain.getpixel((35, 10)), BLUE)
    assert load_image(Image.open(io.BytesIO(exif_jpeg(6)))).size == (20, 40)  # a lazy PIL image


# ---------------------------------------------------------------- files


@pytest.mark.parametrize(
    "name", ["cat.jpg", "photos/cat.png", "notes.txt", "~/no-such-dir-xyz/x.png"]
)
def test_a_misspelt_path_says_file_not_found_not_a_base64_error(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageLoadError, match="^file not found: ") as info:
        load_image(name)
    assert isinstance(info.value, OSError)
    assert Path(name).name in str(info.value) and "base64" not in str(info.value)


def test_a_missing_absolute_path_and_a_directory_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "x.png"
    for source in (str(missing), missing):
        with pytest.raises(ImageLoadError, match=f"^file not found: {re.escape(str(missing))}"):
            load_image(source)
    with pytest.raises(ImageLoadError, match="a directory"):
        load_image(tmp_path)


def test_a_file_over_max_bytes_is_refused(house_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "house.png"
    path.write_bytes(house_png)
    with pytest.raises(ImageTooLargeError, match="over max_bytes=100;") as info:
        load_image(path, max_bytes=100)
    assert isinstance(info.value, ImageLoadError) and "house.png" in str(info.value)
    assert load_image(path, max_bytes=len(house_png)).size == (64, 48)


# ---------------------------------------------------------------- undecodable data


def test_corrupt_bytes_and_text_files_are_not_images(house_png: bytes, tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="the raw data is not an image") as info:
        load_image(house_png[:8] + b"\x00" * 200)
    assert isinstance(info.value, ValueError)
    path = tmp_path / "notes.txt"
    path.write_text("just some text, not pixels\n")
    with pytest.raises(ImageDecodeError, match="notes.txt.*not an image"):
        load_image(path)
    assert load_image(house_png).size == (64, 48)  # the valid twin


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_data_is_refused_naming_its_origin(fmt: str, tmp_path: Path) -> None:
    data = encode(example_image(size=(128, 96)), fmt)
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(data[: len(data) // 2])
    (tmp_path / "half.img").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="half.img"):
        load_image(tmp_path / "half.img")
    assert load_image(data).size == (128, 96)


@pytest.mark.parametrize("junk", ["hello", "abc=def", "iVBORw0KGgo@@@@", "not base64 at all!"])
def test_junk_text_is_neither_a_file_nor_base64(junk: str) -> None:
    with pytest.raises((ImageDecodeError, ImageLoadError)) as info:
        load_image(junk)
    message = str(info.value)
    assert junk in message
    assert "file not found" in message or "no such file, so read as base64" in message


def test_base64_is_decoded_strictly(house: Image.Image, house_png: bytes) -> None:
    b64 = base64.b64encode(house_png).decode()
    with pytest.raises(ImageDecodeError, match="invalid base64"):
        load_image(b64[:40] + "*" + b64[40:])  # a lenient decoder would skip the "*"
    assert load_image(b64).tobytes() == house.tobytes()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("data:image/png;base64,!!!!", "invalid base64"),
        ("data:image/png;base64,@@@", "invalid base64"),
        ("data:image/png;base64", "not an image"),
        ("data:image/png;base64," + base64.b64encode(b"text").decode(), "not an image"),
        ("", "not an image"),
        ("   ", "not an image"),
        (b"", "not an image"),
    ],
)
def test_bad_data_urls_and_empty_input(source: str | bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        load_image(source)


def test_messages_about_huge_inputs_are_shortened() -> None:
    for junk in ("%" * 100_000, "a/" * 3000 + "x.png", "A" * 100_001):
        with pytest.raises((ImageDecodeError, ImageLoadError)) as info:
            load_image(junk)
        assert len(str(info.value)) < 800 and f"({len(junk)} characters)" in str(info.value)


# ---------------------------------------------------------------- URLs


def test_an_unreachable_url_is_an_image_load_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/house.png"
    error = guarded(lambda: load_image(url, timeout=5))
    assert isinstance(error, ImageLoadError) and isinstance(error, OSError)
    assert url in str(error) and "refused" in str(error)


@pytest.mark.parametrize("url", ["http://", "http://[bad/x.png", "http://127.0.0.1:9/a b.png"])
def test_a_malformed_url_is_an_image_load_error(url: str) -> None:
    with pytest.raises(ImageLoadError, match="URL"):
        load_image(url, timeout=2)


def test_http_errors_and_pages_are_named(served: str) -> None:
    with pytest.raises(ImageLoadError, match="missing.png.*404"):
        load_image(f"{served}/missing.png")
    with pytest.raises(ImageDecodeError, match="text/html"):
        load_image(f"{served}/page.html")


def test_a_body_over_max_bytes_is_refused(served: str) -> None:
    with pytest.raises(ImageTooLargeError, match="max_bytes=1000"):
        load_image(f"{served}/big.png", max_bytes=1000)
    assert load_image(f"{served}/big.png").size == (448, 336)


@contextlib.contextmanager
def paced_server(
    body: bytes, *, piece: int, pause: float, length: bool = True, drip_headers: bool = False
) -> Iterator[str]:
    """Serve ``body`` from 127.0.0.1 in pieces of ``piece`` bytes, ``pause`` seconds apart.

    ``length=False`` leaves out Content-Length; ``drip_headers`` sends the status line and
    headers one byte per pause as well.
    """
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            size = f"Content-Length: {len(body)}\r\n" if length else ""
            head = f"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n{size}\r\n".encode()
            pieces = [head[i : i + 1] for i in range(len(head))] if drip_headers else [head]
            pieces += [body[i : i + piece] for i in range(0, len(body), piece)]
            with contextlib.suppress(OSError):  # the client hung up
                for chunk in pieces:
                    if stop.wait(pause):
                        return
                    self.wfile.write(chunk)
                    self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/house.png"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def download_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("load_image download")]


@pytest.mark.parametrize("drip_headers", [False, True], ids=["body", "headers"])
def test_a_dripping_server_cannot_stretch_the_timeout(house_png: bytes, drip_headers: bool) -> None:
    # One byte every 50 ms: every socket read is quick, but the whole answer takes minutes.
    assert len(house_png) * 0.05 > 5 * GUARD
    with paced_server(house_png, piece=1, pause=0.05, drip_headers=drip_headers) as url:
        error = guarded(lambda: load_image(url, timeout=1))
        assert isinstance(error, ImageLoadError), error
        assert "timed out after timeout=1 " in str(error) and url in str(error)
        # The download thread stops at its next read after the deadline, not at the server's pace.
        for thread in download_threads():
            thread.join(GUARD)
        assert not download_threads()


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/house.png"
        error = guarded(lambda: load_image(url, timeout=0.3))
    assert isinstance(error, ImageLoadError) and "timed out after timeout=0.3" in str(error)


def test_paced_and_length_free_bodies_within_the_limits_load(
    house: Image.Image, house_png: bytes
) -> None:
    with paced_server(house_png, piece=len(house_png) // 4 + 1, pause=0.1) as url:
        assert load_image(url, timeout=GUARD).tobytes() == house.tobytes()
    with paced_server(house_png, piece=256, pause=0, length=False) as url:
        with pytest.raises(ImageTooLargeError, match="max_bytes=200;"):
            load_image(url, max_bytes=200)  # the cap holds without a Content-Length
        assert load_image(url, max_bytes=len(house_png)).tobytes() == house.tobytes()


def test_loopback_urls_bypass_a_configured_proxy(
    served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert load_image(f"{served}/house.png").size == (64, 48)


# ---------------------------------------------------------------- kinds and limits


@pytest.mark.parametrize("bad", [42, 3.5, None, ["a.png", "b.png"], {"url": "x"}, object()])
def test_unsupported_kinds_list_the_accepted_ones_and_repeat_the_input(bad: object) -> None:
    with pytest.raises(UnsupportedImageSourceError) as info:
        load_image(bad)
    message = str(info.value)
    assert isinstance(info.value, TypeError)
    assert type(bad).__name__ in message and repr(bad)[:40] in message
    assert "PIL image, path, http(s) URL, bytes, base64 text or data:image/" in message


def test_a_huge_bad_input_is_shortened_in_the_message() -> None:
    with pytest.raises(UnsupportedImageSourceError) as info:
        load_image(list(range(10_000)))
    assert len(str(info.value)) < 400 and "characters)" in str(info.value)


@pytest.mark.parametrize(
    "limits",
    [{"timeout": 0}, {"timeout": float("inf")}, {"timeout": None}, {"max_bytes": 0}]
    + [{"max_bytes": 1.5}, {"max_pixels": 0}, {"max_pixels": -1}, {"max_pixels": True}],
)
def test_bad_limits_are_refused_before_any_work(limits: dict, house: Image.Image) -> None:
    with pytest.raises(ValueError, match=f"{next(iter(limits))} must be a finite number > 0"):
        load_image(house, **limits)
    assert load_image(house, timeout=0.5, max_bytes=1, max_pixels=None).size == house.size


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width x height`` grey pixels but holds 16 bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any PIL image file decodes its pixels."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))


def test_a_header_announcing_a_small_image_is_decoded_and_found_truncated() -> None:
    with Image.open(io.BytesIO(header_only_png(300, 200))) as image:  # the helper's valid twin
        assert image.size == (300, 200)
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(header_only_png(300, 200))


def test_images_over_the_default_pixel_limit_are_refused_from_their_header(
    no_pixel_decoding: None,
) -> None:
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's default: load_image's default limit
    with pytest.raises(ImageTooLargeError, match=r"10000 x 10000 = 100000000 pixels, over") as info:
        load_image(header_only_png(10_000, 10_000))
    assert "max_pixels=89478485" in str(info.value) and isinstance(info.value, ImageLoadError)
    # Over twice PIL's limit, PIL itself refuses, and the message still blames the size.
    with pytest.raises(ImageTooLargeError, match="900000000 pixels") as info:
        load_image(header_only_png(30_000, 30_000), max_pixels=10**9)
    assert "MAX_IMAGE_PIXELS" in str(info.value) and "corrupt" not in str(info.value)


def test_max_pixels_and_pils_limit_change_the_pixel_limit(
    house_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    just_over = header_only_png(9_500, 9_500)  # 90,250,000: over the default, under twice it
    with pytest.raises(ImageTooLargeError):
        load_image(just_over)
    with pytest.raises(ImageDecodeError, match="truncated"):  # let through, then decoded
        load_image(just_over, max_pixels=100_000_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3071)
    with pytest.raises(ImageTooLargeError, match="64 x 48 = 3072 pixels, over max_pixels=3071"):
        load_image(house_png)


@pytest.mark.parametrize("kind", ["pil", "path", "http", "bytes", "b64", "data"])
def test_max_pixels_applies_to_every_input_kind(
    kind: str, house: Image.Image, house_png: bytes, tmp_path: Path, served: str
) -> None:
    (tmp_path / "house.png").write_bytes(house_png)
    b64 = base64.b64encode(house_png).decode()
    sources = {
        "pil": lambda: Image.open(io.BytesIO(house_png)),
        "path": lambda: tmp_path / "house.png",
        "http": lambda: f"{served}/house.png",
        "bytes": lambda: house_png,
        "b64": lambda: b64,
        "data": lambda: f"data:image/png;base64,{b64}",
    }
    with pytest.raises(ImageTooLargeError, match="64 x 48 = 3072 pixels, over max_pixels=3071"):
        load_image(sources[kind](), max_pixels=3071)
    assert load_image(sources[kind](), max_pixels=3072).tobytes() == house.tobytes()


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "b64", "data"])
def test_encoded_inputs_are_capped_in_bytes_before_decoding(
    kind: str, house: Image.Image, house_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    b64 = base64.b64encode(house_png).decode()
    source = {
        "bytes": house_png,
        "bytearray": bytearray(house_png),
        "memoryview": memoryview(house_png),
        "b64": b64,
        "data": f"data:image/png;base64,{b64}",
    }[kind]
    size = len(house_png)
    with monkeypatch.context() as patch:
        patch.setattr(images.base64, "b64decode", lambda *a, **k: pytest.fail("decoded"))
        patch.setattr(images.Image, "open", lambda *a, **k: pytest.fail("opened"))
        with pytest.raises(
            ImageTooLargeError, match=f"holds {size} bytes, over max_bytes={size - 1}"
        ):
            load_image(source, max_bytes=size - 1)
    assert load_image(source, max_bytes=size).tobytes() == house.tobytes()  # exactly at the cap


# ---------------------------------------------------------------- example picture and helpers


@pytest.mark.parametrize(
    "description",
    ["a red circle and a blue square", "a yellow triangle", "a green square and a red triangle"],
)
@pytest.mark.parametrize("size", [(448, 336), (224, 168), (336, 448), (64, 96)])
def test_example_image_draws_exactly_what_the_toy_pictures_draw(
    description: str, size: tuple[int, int]
) -> None:
    from vlm_tutorial.offline import toys

    assert example_image(description, size).tobytes() == toys.draw(description, size).tobytes()


def test_example_image_shows_a_red_circle_left_and_a_blue_square_right() -> None:
    image = example_image()
    assert (image.mode, image.size) == ("RGB", (448, 336))
    assert {tuple(c) for c in np.asarray(image).reshape(-1, 3)} == {
        WHITE,
        (220, 40, 40),
        (40, 80, 220),
    }
    side = 0.4 * 336  # each shape's bounding box
    left, right, top = 0.28 * 448 - 0.45 * side, 0.72 * 448 - 0.45 * side, 168 - 0.45 * side
    assert image.getpixel((125, 168)) == (220, 40, 40) and image.getpixel((323, 168)) == (
        40,
        80,
        220,
    )
    assert image.getpixel((round(left), round(top))) == WHITE  # a circle's corner is background
    assert image.getpixel((round(right), round(top))) == (40, 80, 220)  # a square's is not
    assert example_image().tobytes() == image.tobytes()


@pytest.mark.parametrize("bad", ["a purple circle", "a red hexagon", "red circle", (252, 168)])
def test_example_image_names_what_it_cannot_draw(bad: object) -> None:
    with pytest.raises(ValueError, match=r"cannot draw .*'a <colour> <shape>'") as info:
        example_image(bad)  # type: ignore[arg-type]
    assert str(bad) in str(info.value) and "yellow" in str(info.value)


def test_example_image_draws_without_the_offline_package() -> None:
    code = "import sys, vlm_tutorial.images as m; m.example_image(); print(sorted(sys.modules))"
    modules = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    assert "vlm_tutorial.images" in modules and "vlm_tutorial.offline" not in modules


def test_base64_and_data_url_round_trip(house: Image.Image) -> None:
    b64 = image_to_base64(house)
    assert base64.b64decode(b64, validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_image(b64).tobytes() == house.tobytes()
    url = image_to_data_url(house)
    assert url == f"data:image/png;base64,{b64}"
    assert load_image(url).tobytes() == house.tobytes()
    with pytest.raises(ImageLoadError, match="file not found: house.png"):
        image_to_base64("house.png")  # any source load_image takes, with its errors


def test_base64_of_a_path_or_of_rgba_is_the_rgb_png_sglang_would_see(
    house_png: bytes, tmp_path: Path
) -> None:
    (tmp_path / "house.png").write_bytes(house_png)
    assert image_to_base64(tmp_path / "house.png") == image_to_base64(house_png)
    rgba = Image.new("RGBA", (4, 4), (*BLUE, 0))
    assert load_image(image_to_base64(rgba)).tobytes() == rgba.convert("RGB").tobytes()


def test_serve_images_serves_a_folder_quietly_and_stops_on_exit(
    house_png: bytes, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "house.png").write_bytes(house_png)
    with serve_images(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert load_image(f"{base_url}/house.png").size == (64, 48)
    assert capfd.readouterr().err == ""  # no request log
    with pytest.raises(ImageLoadError, match="refused"):
        load_image(f"{base_url}/house.png", timeout=GUARD)
    with pytest.raises(NotADirectoryError, match="missing"), serve_images(tmp_path / "missing"):
        pass
