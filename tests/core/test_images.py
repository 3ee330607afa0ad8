"""Tests for vlm_tutorial.images: every input kind, every mode, every failure.

URLs are served from 127.0.0.1 inside the test process; nothing touches the network.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import socket
import struct
import threading
import time
import urllib.request
import warnings
import zlib
from collections.abc import Iterator
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
    ACCEPTED_KINDS,
    DEFAULT_MAX_PIXELS,
    EXAMPLE_IMAGE_SIZE,
    MAX_PIXELS_ENV,
    example_image,
    image_to_base64,
    image_to_bytes,
    image_to_data_url,
    load_image,
    save_example_image,
    serve_images,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def house() -> Image.Image:
    """A small RGB image of seeded noise (every pixel its own colour, so its PNG is about 9 KB)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="module")
def house_png(house: Image.Image) -> bytes:
    buffer = io.BytesIO()
    house.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, house_png: bytes) -> Iterator[str]:
    """A loopback HTTP server over a folder holding house.png, big.png and page.html."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "house.png").write_bytes(house_png)
    (folder / "big.png").write_bytes(image_to_bytes(example_image((448, 336))))
    (folder / "page.html").write_text("<html><body>Not an image</body></html>")
    with serve_images(folder) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def streaming_url(house_png: bytes) -> Iterator[str]:
    """A server that sends house.png with no Content-Length header (read until close)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for start in range(0, len(house_png), 256):
                self.wfile.write(house_png[start : start + 256])

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/house.png"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def encode(image: Image.Image, fmt: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


# ---------------------------------------------------------------- input kinds


@pytest.mark.parametrize(
    "kind",
    [
        "pil",
        "str_path",
        "pathlib",
        "file_url",
        "http_url",
        "bytes",
        "bytearray",
        "memoryview",
        "base64",
        "base64_with_line_breaks",
        "data_url",
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
        "str_path": str(path),
        "pathlib": path,
        "file_url": path.as_uri(),
        "http_url": f"{served}/house.png",
        "bytes": house_png,
        "bytearray": bytearray(house_png),
        "memoryview": memoryview(house_png),
        "base64": b64,
        "base64_with_line_breaks": base64.encodebytes(house_png).decode(),
        "data_url": f"data:image/png;base64,{b64}",
    }[kind]
    image = load_image(source)
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert image.size == house.size
    assert image.tobytes() == house.tobytes()


def test_a_relative_path_is_read_from_the_working_directory(
    house_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cat.png").write_bytes(house_png)
    monkeypatch.chdir(tmp_path)
    assert load_image("cat.png").size == (64, 48)


def test_a_file_without_image_suffix_is_still_read(house_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "no_suffix"
    path.write_bytes(house_png)
    assert load_image(str(path)).size == (64, 48)


def test_an_existing_file_wins_over_base64(
    house_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageDecodeError, match="base64"):
        load_image("abcd")  # valid base64 text, but not of an image
    (tmp_path / "abcd").write_bytes(house_png)
    assert load_image("abcd").size == (64, 48)


def test_jpeg_base64_starting_with_slash_is_base64_not_a_path(house: Image.Image) -> None:
    b64 = base64.b64encode(encode(house, "JPEG")).decode()
    assert b64.startswith("/9j/")
    image = load_image(b64)
    assert image.size == house.size
    # JPEG is lossy: compare with PIL's own decoding of the same bytes.
    assert image.tobytes() == Image.open(io.BytesIO(base64.b64decode(b64))).tobytes()


def test_the_result_is_a_new_image_and_the_input_is_unchanged() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    before = rgba.tobytes()
    image = load_image(rgba)
    assert image is not rgba
    assert rgba.mode == "RGBA" and rgba.tobytes() == before
    rgb = Image.new("RGB", (4, 4), RED)
    copy = load_image(rgb)
    assert copy is not rgb
    copy.putpixel((0, 0), BLUE)
    assert rgb.getpixel((0, 0)) == RED


# ---------------------------------------------------------------- modes -> RGB


def palette_image(transparent: bool) -> Image.Image:
    """Index 0 is red (transparent if asked), index 1 is blue at (0, 0)."""
    image = Image.new("P", (4, 4), 0)
    image.putpalette([*RED, *BLUE] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), 1)
    if transparent:
        image.info["transparency"] = 0
    return image


def i16_image() -> Image.Image:
    values = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    return image


MODE_CASES = {
    # name: (image, {(x, y): expected RGB})
    "RGB": (lambda: Image.new("RGB", (2, 2), (10, 20, 30)), {(0, 0): (10, 20, 30)}),
    "RGBA opaque": (lambda: Image.new("RGBA", (2, 2), (*RED, 255)), {(0, 0): RED}),
    "RGBA transparent -> white": (lambda: Image.new("RGBA", (2, 2), (*RED, 0)), {(0, 0): WHITE}),
    "RGBA half -> blended on white": (
        lambda: Image.new("RGBA", (2, 2), (*RED, 128)),
        {(0, 0): (255, 127, 127)},
    ),
    "LA opaque": (lambda: Image.new("LA", (2, 2), (100, 255)), {(0, 0): (100, 100, 100)}),
    "LA transparent -> white": (lambda: Image.new("LA", (2, 2), (100, 0)), {(0, 0): WHITE}),
    "L": (lambda: Image.new("L", (2, 2), 77), {(0, 0): (77, 77, 77)}),
    "1": (lambda: Image.new("1", (2, 2), 1), {(0, 0): WHITE}),
    "P": (lambda: palette_image(False), {(0, 0): BLUE, (1, 1): RED}),
    "P transparent index -> white": (lambda: palette_image(True), {(0, 0): BLUE, (1, 1): WHITE}),
    "CMYK": (lambda: Image.new("CMYK", (2, 2), (0, 255, 255, 0)), {(0, 0): RED}),
    "I;16 scaled to 8 bits": (
        i16_image,
        {(0, 0): (0, 0, 0), (1, 0): WHITE, (0, 1): (128, 128, 128), (1, 1): (3, 3, 3)},
    ),
}


@pytest.mark.parametrize("case", list(MODE_CASES))
def test_every_mode_comes_out_rgb_with_the_expected_pixels(case: str) -> None:
    make, expected = MODE_CASES[case]
    image = load_image(make())
    assert image.mode == "RGB"
    for xy, rgb in expected.items():
        assert np.abs(np.subtract(image.getpixel(xy), rgb)).max() <= 1, (xy, image.getpixel(xy))


def test_png_file_with_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (*BLUE, 255))
    path = tmp_path / "logo.png"
    rgba.save(path)
    image = load_image(path)
    assert image.getpixel((0, 0)) == BLUE
    assert image.getpixel((3, 3)) == WHITE  # a plain convert("RGB") would give black


def test_16_bit_png_file_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "depth.png"
    Image.fromarray(np.full((2, 2), 20000, dtype=np.uint16)).save(path)
    assert load_image(path).getpixel((0, 0)) == (78, 78, 78)  # 20000 >> 8; not 255


# ---------------------------------------------------------------- EXIF


def exif_jpeg(orientation: int | None) -> bytes:
    """A 40x20 JPEG: left half red, right half blue, with an optional EXIF orientation."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    if orientation is None:
        return encode(image, "JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def close_to(pixel: tuple[int, ...], rgb: tuple[int, int, int]) -> bool:
    return bool(np.abs(np.subtract(pixel, rgb)).max() < 40)


def test_exif_orientation_is_applied() -> None:
    # Orientation 6: the camera was turned; display = rotate 90 degrees clockwise.
    image = load_image(exif_jpeg(6))
    assert image.size == (20, 40)
    assert close_to(image.getpixel((10, 5)), RED)  # the left half is now on top
    assert close_to(image.getpixel((10, 35)), BLUE)


def test_without_exif_orientation_the_image_is_not_rotated() -> None:
    image = load_image(exif_jpeg(None))
    assert image.size == (40, 20)
    assert close_to(image.getpixel((5, 10)), RED)
    assert close_to(image.getpixel((35, 10)), BLUE)


def test_exif_orientation_of_an_in_memory_pil_image_is_applied() -> None:
    image = Image.open(io.BytesIO(exif_jpeg(6)))  # lazily opened, not yet loaded
    assert load_image(image).size == (20, 40)


# ---------------------------------------------------------------- missing files


@pytest.mark.parametrize(
    "name", ["cat.jpg", "photos/cat.png", "notes.txt", "~/no-such-dir-xyz/x.png"]
)
def test_a_misspelt_relative_path_says_file_not_found(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageLoadError, match="^file not found: ") as info:
        load_image(name)
    assert isinstance(info.value, OSError)
    assert os.path.basename(name) in str(info.value)
    assert "base64" not in str(info.value)


def test_a_missing_absolute_path_says_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "x.png"
    with pytest.raises(ImageLoadError, match=f"^file not found: {missing}"):
        load_image(str(missing))
    with pytest.raises(ImageLoadError, match="^file not found: "):
        load_image(missing)  # pathlib.Path too


def test_the_same_path_loads_once_the_file_exists(
    house_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.jpg").write_bytes(house_png)  # PIL reads the content, not the suffix
    assert load_image("cat.jpg").size == (64, 48)


def test_a_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(str(tmp_path))


def test_a_file_over_max_bytes_is_refused(house_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "house.png"
    path.write_bytes(house_png)
    with pytest.raises(ImageLoadError, match="max_bytes=100"):
        load_image(path, max_bytes=100)
    assert load_image(path, max_bytes=len(house_png)).size == (64, 48)


# ---------------------------------------------------------------- undecodable data


def test_corrupt_bytes_raise_image_decode_error(house_png: bytes) -> None:
    corrupt = house_png[:8] + b"\x00" * 200
    with pytest.raises(ImageDecodeError) as info:
        load_image(corrupt)
    assert isinstance(info.value, ValueError)
    assert "bytes" in str(info.value)
    assert load_image(house_png).size == (64, 48)  # the valid twin


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_bytes_raise_image_decode_error(fmt: str) -> None:
    data = encode(example_image((128, 96)), fmt)
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(data[: len(data) // 2])
    assert load_image(data).size == (128, 96)


def test_a_truncated_file_names_the_file(tmp_path: Path) -> None:
    data = encode(example_image((128, 96)), "PNG")
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="half.png"):
        load_image(path)


def test_a_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, not pixels\n")
    with pytest.raises(ImageDecodeError, match="notes.txt.*not an image"):
        load_image(str(path))


@pytest.mark.parametrize(
    "junk", ["hello", "not base64 at all!", "abc=def", "iVBORw0KGgo@@@@", "%%%%"]
)
def test_junk_text_is_neither_a_file_nor_base64(junk: str) -> None:
    with pytest.raises(ImageDecodeError, match="not an existing file.*nor valid base64") as info:
        load_image(junk)
    assert repr(junk) in str(info.value)


def test_base64_is_decoded_strictly(house: Image.Image, house_png: bytes) -> None:
    b64 = base64.b64encode(house_png).decode()
    with pytest.raises(ImageDecodeError, match="nor valid base64"):
        load_image(b64[:40] + "!" + b64[40:])  # lenient decoding would skip the "!"
    assert load_image(b64).tobytes() == house.tobytes()


def test_messages_about_huge_strings_are_truncated() -> None:
    for junk in ("%" * 100_000, "a/" * 3000 + "x.png"):
        with pytest.raises((ImageDecodeError, ImageLoadError)) as info:
            load_image(junk)
        assert len(str(info.value)) < 800
        assert f"{len(junk)} characters" in str(info.value)


def test_valid_base64_of_non_image_bytes_is_not_an_image() -> None:
    text = base64.b64encode(b"hello world, no pixels here").decode()
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_image(text)


@pytest.mark.parametrize(
    ("data_url", "message"),
    [
        ("data:image/png;base64,!!!!", "invalid base64"),
        ("data:image/png,rawtext", "not base64-encoded"),
        ("data:image/png;base64", "not base64-encoded"),
        ("data:image/png;base64," + base64.b64encode(b"text").decode(), "not an image"),
    ],
)
def test_bad_data_urls(data_url: str, message: str, house: Image.Image) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        load_image(data_url)
    assert load_image(image_to_data_url(house)).size == house.size


@pytest.mark.parametrize("empty", ["", "   ", b"", bytearray()])
def test_empty_input_is_refused(empty: str | bytes) -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(empty)


# ---------------------------------------------------------------- URLs


def test_an_unreachable_url_fails_fast_with_image_load_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/house.png"
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match="could not be reached") as info:
        load_image(url, timeout=5)
    assert time.monotonic() - start < 3
    assert url in str(info.value)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize("url", ["http://", "http://[bad/x.png", "https://exa mple.com/x.png"])
def test_a_malformed_url_is_an_image_load_error(url: str) -> None:
    with pytest.raises(ImageLoadError, match="URL"):
        load_image(url, timeout=2)


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/house.png"
        errors: list[BaseException] = []

        def attempt() -> None:
            try:
                load_image(url, timeout=0.3)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=attempt, daemon=True)  # a hang fails, not blocks
        thread.start()
        thread.join(timeout=5)
        assert not thread.is_alive(), "load_image ignored its timeout"
    assert len(errors) == 1 and isinstance(errors[0], ImageLoadError), errors
    assert "timed out after timeout=0.3" in str(errors[0])


@contextlib.contextmanager
def paced_server(
    body: bytes, *, piece: int, pause: float, drip_headers: bool = False
) -> Iterator[str]:
    """Serve ``body`` from 127.0.0.1 in pieces of ``piece`` bytes, ``pause`` seconds apart.

    The answer has a Content-Length. With ``drip_headers`` the status line and
    headers go out one byte at a time, ``pause`` seconds apart, as well.
    """
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            head = (
                f"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            pieces = [head[i : i + 1] for i in range(len(head))] if drip_headers else [head]
            pieces += [body[i : i + piece] for i in range(0, len(body), piece)]
            try:
                for chunk in pieces:
                    if stop.wait(pause):
                        return
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except OSError:  # the client hung up
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/house.png"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def download_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "load_image download"]


@pytest.mark.parametrize("drip_headers", [False, True], ids=["body", "headers"])
def test_a_dripping_server_cannot_stretch_the_timeout(house_png: bytes, drip_headers: bool) -> None:
    # One byte every 50 ms: every socket read succeeds well within the timeout,
    # but the whole answer would take over 30 s.
    assert len(house_png) * 0.05 > 30
    with paced_server(house_png, piece=1, pause=0.05, drip_headers=drip_headers) as url:
        start = time.monotonic()
        with pytest.raises(ImageLoadError, match="timed out after timeout=1 ") as info:
            load_image(url, timeout=1)
        elapsed = time.monotonic() - start
        assert elapsed < 1 + 1.0, f"load_image(timeout=1) took {elapsed:.1f} s"
        assert url in str(info.value)
        # The download thread stops at its next read after the deadline, not at the server's pace.
        give_up = time.monotonic() + 3
        while download_threads() and time.monotonic() < give_up:
            time.sleep(0.05)
        assert not download_threads()


def test_a_paced_server_that_finishes_within_the_timeout_works(
    house: Image.Image, house_png: bytes
) -> None:
    # The valid twin: four pieces 0.1 s apart, well within the timeout.
    with paced_server(house_png, piece=len(house_png) // 4 + 1, pause=0.1) as url:
        assert load_image(url, timeout=5).tobytes() == house.tobytes()


def test_http_404_is_an_image_load_error(served: str) -> None:
    with pytest.raises(ImageLoadError, match="404") as info:
        load_image(f"{served}/missing.png")
    assert "missing.png" in str(info.value)
    assert load_image(f"{served}/house.png").size == (64, 48)


def test_a_body_over_max_bytes_is_refused(served: str) -> None:
    url = f"{served}/big.png"
    with pytest.raises(ImageLoadError, match="max_bytes=1000"):
        load_image(url, max_bytes=1000)
    assert load_image(url).size == (448, 336)


def test_the_size_cap_holds_without_content_length(streaming_url: str, house_png: bytes) -> None:
    with urllib.request.urlopen(streaming_url, timeout=5) as response:
        assert response.headers.get("Content-Length") is None
    assert len(house_png) > 200  # the server sends 256-byte chunks
    with pytest.raises(ImageLoadError, match="max_bytes=200"):
        load_image(streaming_url, max_bytes=200)
    assert load_image(streaming_url, max_bytes=len(house_png)).size == (64, 48)


def test_a_page_that_is_not_an_image_names_its_content_type(served: str) -> None:
    with pytest.raises(ImageDecodeError, match="text/html"):
        load_image(f"{served}/page.html")


def test_loopback_urls_bypass_a_configured_proxy(
    served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert load_image(f"{served}/house.png").size == (64, 48)


# ---------------------------------------------------------------- unsupported kinds and limits


@pytest.mark.parametrize("bad", [42, 3.5, None, ["a.png", "b.png"], {"url": "x"}, object()])
def test_unsupported_kinds_raise_type_error_listing_accepted_kinds(bad: object) -> None:
    with pytest.raises(UnsupportedImageSourceError) as info:
        load_image(bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert isinstance(info.value, TypeError)
    assert message.endswith(f"{ACCEPTED_KINDS}.")
    assert type(bad).__name__ in message
    assert repr(bad)[:40] in message


def test_a_huge_bad_input_is_truncated_in_the_message() -> None:
    with pytest.raises(UnsupportedImageSourceError) as info:
        load_image(list(range(10_000)))  # type: ignore[arg-type]
    assert len(str(info.value)) < 600
    assert "10000 items" in str(info.value)
    assert "call load_image on each" in str(info.value)


def test_other_url_schemes_are_unsupported() -> None:
    with pytest.raises(UnsupportedImageSourceError, match="ftp://"):
        load_image("ftp://example.com/cat.png")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": float("inf")}, ValueError),
        ({"timeout": None}, TypeError),
        ({"max_bytes": 0}, ValueError),
        ({"max_bytes": 1.5}, TypeError),
    ],
)
def test_bad_limits_are_refused_before_any_work(
    kwargs: dict, error: type[Exception], house: Image.Image
) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        load_image(house, **kwargs)
    assert load_image(house, timeout=0.5, max_bytes=1).size == house.size


# ---------------------------------------------------------------- size limits


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width x height`` 8-bit grey pixels but holds 16 bytes of data.

    A few dozen bytes, cheap at any announced size; decoding it would need
    ``width * height`` bytes and then fail as truncated.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any PIL image file decodes its pixels."""
    from PIL import ImageFile

    def refuse(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_the_default_pixel_limit_is_pils_default() -> None:
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485


def test_the_header_only_png_helper_announces_its_size() -> None:
    # The valid twin of the tests below: PIL reads the announced size from the header.
    with Image.open(io.BytesIO(header_only_png(300, 200))) as image:
        assert image.size == (300, 200)
    with pytest.raises(ImageDecodeError, match="truncated"):  # within the limit: decoded, fails
        load_image(header_only_png(300, 200))


def test_a_100_megapixel_image_is_refused_from_its_header(no_pixel_decoding: None) -> None:
    data = header_only_png(10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning would fail the test
        with pytest.raises(ImageTooLargeError) as info:
            load_image(data)
    message = str(info.value)
    assert "10000 x 10000 = 100000000 pixels" in message
    assert f"max_pixels={DEFAULT_MAX_PIXELS}" in message
    assert MAX_PIXELS_ENV in message and "max_pixels=N" in message
    assert isinstance(info.value, ImageLoadError)


def test_a_900_megapixel_image_is_refused_without_blaming_the_file() -> None:
    with pytest.raises(ImageTooLargeError) as info:
        load_image(header_only_png(30_000, 30_000))
    message = str(info.value)
    assert "900000000 pixels" in message and f"max_pixels={DEFAULT_MAX_PIXELS}" in message
    assert "re-download" not in message and "corrupt" not in message


def test_a_limit_above_pils_own_names_pils_limit() -> None:
    # PIL refuses over twice Image.MAX_IMAGE_PIXELS whatever max_pixels says.
    with pytest.raises(ImageTooLargeError, match=r"PIL.Image.MAX_IMAGE_PIXELS") as info:
        load_image(header_only_png(30_000, 30_000), max_pixels=10**9)
    assert "max_pixels=1000000000 allows it" in str(info.value)


def _every_kind(house_png: bytes, tmp_path: Path, served: str) -> dict[str, object]:
    path = tmp_path / "house.png"
    path.write_bytes(house_png)
    b64 = base64.b64encode(house_png).decode()
    return {
        "pil": Image.open(io.BytesIO(house_png)),
        "path": path,
        "http_url": f"{served}/house.png",
        "bytes": house_png,
        "base64": b64,
        "data_url": f"data:image/png;base64,{b64}",
    }


@pytest.mark.parametrize("kind", ["pil", "path", "http_url", "bytes", "base64", "data_url"])
def test_max_pixels_applies_to_every_input_kind(
    kind: str, house: Image.Image, house_png: bytes, tmp_path: Path, served: str
) -> None:
    pixels = house.width * house.height  # 64 x 48 = 3072
    with pytest.raises(
        ImageTooLargeError, match=rf"64 x 48 = {pixels} pixels.*max_pixels={pixels - 1}"
    ):
        load_image(_every_kind(house_png, tmp_path, served)[kind], max_pixels=pixels - 1)
    # The valid twin: exactly at the limit.
    loaded = load_image(_every_kind(house_png, tmp_path, served)[kind], max_pixels=pixels)
    assert loaded.tobytes() == house.tobytes()


def test_the_environment_variable_sets_the_pixel_limit(
    house: Image.Image, house_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels = house.width * house.height
    monkeypatch.setenv(MAX_PIXELS_ENV, str(pixels - 1))
    with pytest.raises(ImageTooLargeError, match=f"max_pixels={pixels - 1}"):
        load_image(house_png)
    assert load_image(house_png, max_pixels=pixels).size == house.size  # the argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV, str(pixels))
    assert load_image(house_png).size == house.size
    # Raised, it lets through what the default refuses (then decoding fails: it is truncated).
    just_over = header_only_png(9_500, 9_500)
    assert DEFAULT_MAX_PIXELS < 9_500 * 9_500
    monkeypatch.setenv(MAX_PIXELS_ENV, "100_000_000")
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(just_over)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    with pytest.raises(ImageTooLargeError):
        load_image(just_over)


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
def test_a_bad_pixel_limit_variable_is_named(
    value: str, house_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    with pytest.raises(ValueError, match=rf"{MAX_PIXELS_ENV}={value!r}.*positive integer"):
        load_image(house_png)
    monkeypatch.setenv(MAX_PIXELS_ENV, "")  # the valid twin: empty means the default
    assert load_image(house_png).size == (64, 48)


@pytest.mark.parametrize(
    ("max_pixels", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_a_bad_max_pixels_argument_is_refused(
    max_pixels: object, error: type[Exception], house: Image.Image
) -> None:
    with pytest.raises(error, match="max_pixels"):
        load_image(house, max_pixels=max_pixels)  # type: ignore[arg-type]
    assert load_image(house, max_pixels=None).size == house.size


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "base64", "data_url"])
def test_encoded_inputs_are_capped_in_bytes_before_decoding(
    kind: str, house: Image.Image, house_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    b64 = base64.b64encode(house_png).decode()
    source = {
        "bytes": house_png,
        "bytearray": bytearray(house_png),
        "memoryview": memoryview(house_png),
        "base64": b64,
        "data_url": f"data:image/png;base64,{b64}",
    }[kind]
    size = len(house_png)
    with monkeypatch.context() as patch:
        patch.setattr(images.base64, "b64decode", lambda *a, **k: pytest.fail("decoded"))
        patch.setattr(images.Image, "open", lambda *a, **k: pytest.fail("opened"))
        with pytest.raises(ImageTooLargeError, match=rf"max_bytes={size - 1} bytes \({size} "):
            load_image(source, max_bytes=size - 1)
    # The valid twin: exactly at the cap.
    assert load_image(source, max_bytes=size).tobytes() == house.tobytes()


# ---------------------------------------------------------------- example image


def test_example_image_is_deterministic_rgb_of_the_default_size() -> None:
    first, second = example_image(), example_image()
    assert first.mode == "RGB"
    assert first.size == EXAMPLE_IMAGE_SIZE == (448, 336)
    assert first.tobytes() == second.tobytes()
    assert first is not second


def test_example_image_shows_a_red_circle_and_a_blue_square() -> None:
    image = example_image()
    colours = {tuple(c) for c in np.asarray(image).reshape(-1, 3)}
    white, red, blue = (255, 255, 255), (220, 40, 40), (40, 80, 220)
    assert colours == {white, red, blue}
    width, height = image.size
    assert image.getpixel((10, 10)) == white  # plain background
    assert image.getpixel((round(0.28 * width), height // 2)) == red  # the circle, left
    assert image.getpixel((round(0.72 * width), height // 2)) == blue  # the square, right
    # The circle's bounding-box corner is background; the square's is not.
    side = 0.4 * height
    assert image.getpixel((round(0.28 * width - 0.45 * side), round(height / 2 - 0.45 * side))) == white
    assert image.getpixel((round(0.72 * width - 0.45 * side), round(height / 2 - 0.45 * side))) == blue


def test_example_image_scales_to_other_sizes() -> None:
    image = example_image((64, 96))
    assert image.size == (64, 96)
    assert {(220, 40, 40), (40, 80, 220)} <= {tuple(c) for c in np.asarray(image).reshape(-1, 3)}


@pytest.mark.parametrize("size", [(10, 10), (448,), (448.0, 336), "448x336", (0, 336)])
def test_example_image_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(ValueError, match="size must be"):
        example_image(size)  # type: ignore[arg-type]


# ---------------------------------------------------------------- raw-form helpers


def test_base64_and_data_url_round_trip(house: Image.Image) -> None:
    b64 = image_to_base64(house)
    assert base64.b64decode(b64, validate=True)[:4] == b"\x89PNG"
    assert load_image(b64).tobytes() == house.tobytes()
    url = image_to_data_url(house)
    assert url.startswith("data:image/png;base64,")
    assert load_image(url).tobytes() == house.tobytes()


def test_jpeg_helpers_use_the_jpeg_mime_type(house: Image.Image) -> None:
    assert image_to_base64(house, format="JPEG").startswith("/9j/")
    assert image_to_data_url(house, format="JPEG").startswith("data:image/jpeg;base64,/9j/")


def test_helpers_accept_any_loadable_source(house_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "house.png"
    path.write_bytes(house_png)
    assert image_to_bytes(path) == image_to_bytes(house_png)
    with pytest.raises(ImageLoadError, match="file not found"):
        image_to_base64(tmp_path / "missing.png")


def test_save_example_image_writes_an_absolute_loadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = save_example_image(Path("out") / "house.png", size=(96, 64))
    assert path.is_absolute()
    assert path == tmp_path / "out" / "house.png"
    assert load_image(path).tobytes() == example_image((96, 64)).tobytes()


def test_serve_images_serves_a_folder_and_stops_on_exit(house_png: bytes, tmp_path: Path) -> None:
    (tmp_path / "house.png").write_bytes(house_png)
    with serve_images(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert load_image(f"{base_url}/house.png").size == (64, 48)
    with pytest.raises(ImageLoadError, match="could not be reached"):
        load_image(f"{base_url}/house.png", timeout=2)


def test_serve_images_needs_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="missing"), serve_images(tmp_path / "missing"):
        pass
