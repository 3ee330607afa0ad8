"""Load images from every form SGLang accepts, draw the example picture, serve files locally."""

import base64
import concurrent.futures
import contextlib
import functools
import http.client
import io
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageDraw

from . import errors

# Read as base64 when no such file exists: only base64 characters, or longer than any path.
_BASE64 = re.compile(r"[A-Za-z0-9+/\s]*=?=?\s*|(?s:.{4097,})")
_COLOURS = dict(red=(220, 40, 40), green=(40, 160, 60), blue=(40, 80, 220), yellow=(240, 200, 30))


def load_image(
    source: Any,
    *,
    timeout: float = 10.0,
    max_bytes: int = 50 * 2**20,
    max_pixels: int | None = None,
) -> Image.Image:
    """Load a PIL image, path, ``http(s)://`` URL, bytes, base64 text or data URL as RGB.

    A file wins over base64; ``timeout`` bounds the whole download; big inputs raise early.

    >>> load_image(image_to_base64(example_image(size=(64, 48)))).size
    (64, 48)
    """
    limit = (Image.MAX_IMAGE_PIXELS or sys.maxsize) if max_pixels is None else max_pixels
    for name, value in (("timeout", timeout), ("max_bytes", max_bytes), ("max_pixels", limit)):
        number = isinstance(value, int | float if name == "timeout" else int)
        if isinstance(value, bool) or not number or not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if isinstance(source, Image.Image):
        return _decode(source, "the PIL image", limit)
    if isinstance(source, bytes | bytearray | memoryview):
        _check_size(len(source), "the raw data", max_bytes)
        return _decode(bytes(source), "the raw data", limit)
    if not isinstance(source, str | os.PathLike):
        raise errors.UnsupportedImageSourceError(
            f"cannot load an image from {type(source).__name__} {_short(source)}; pass one PIL "
            "image, path, http(s) URL, bytes, base64 text or data:image/...;base64, URL"
        )
    text = os.fsdecode(source).strip()
    if text.lower().startswith(("http://", "https://")):
        data, origin = _download(text, timeout, max_bytes)
    elif text.lower().startswith("data:"):
        origin = f"the data URL {_short(text)!r}"
        data = _from_base64(text.partition(",")[2], origin, max_bytes)
    elif os.path.exists(path := os.path.expanduser(text)) or not _BASE64.fullmatch(text):
        if not os.path.isfile(path):
            where = "a directory" if os.path.isdir(path) else _short(os.path.abspath(path))
            raise errors.ImageLoadError(
                f"file not found: {_short(path)} ({where}); check the spelling and the working "
                "directory, or pass an absolute path"
            )
        with open(path, "rb") as handle:
            data, origin = handle.read(max_bytes + 1), f"the file {_short(path)!r}"
        _check_size(len(data), origin, max_bytes)
    else:  # no such file: read it as base64
        origin = f"the text {_short(text)!r} (no such file, so read as base64)"
        data = _from_base64(text, origin, max_bytes)
    return _decode(data, origin, limit)


def _short(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _check_size(size: int, origin: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise errors.ImageTooLargeError(
            f"{origin} holds {size} bytes, over max_bytes={max_bytes}; shrink it or raise max_bytes"
        )


def _from_base64(text: str, origin: str, max_bytes: int) -> bytes:
    compact = "".join(text.split())  # line breaks of wrapped base64 are fine
    _check_size(len(compact) * 3 // 4 - compact[-2:].count("="), origin, max_bytes)
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError as exc:  # binascii.Error
        raise errors.ImageDecodeError(
            f"{origin} holds invalid base64 ({exc}); pass a file, a URL or image_to_base64(image)"
        ) from exc


def _download(url: str, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="load_image download")
    future = pool.submit(_fetch, url, time.monotonic() + timeout + 1, max_bytes)
    pool.shutdown(wait=False)
    try:
        return future.result(timeout)
    except TimeoutError:  # the thread, given 1 s more to lose this race, stops soon after
        raise errors.ImageLoadError(
            f"URL {_short(url)} timed out after timeout={timeout} s for the whole download; "
            "pass a larger timeout, or download the image and pass its path"
        ) from None


def _fetch(url: str, deadline: float, max_bytes: int) -> tuple[bytes, str]:
    data = bytearray()
    try:
        loopback = urllib.parse.urlparse(url).hostname in ("localhost", "127.0.0.1", "::1")
        # A proxy cannot reach this machine's loopback interface: talk to it directly.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({} if loopback else None))
        with opener.open(url, timeout=max(0.01, deadline - time.monotonic())) as response:
            origin = f"the URL {_short(url)} (Content-Type {response.headers['Content-Type']})"
            # read1 returns what one socket read brings, so the deadline is checked often.
            while len(data) <= max_bytes and (chunk := response.read1(65536)):
                data += chunk
                if time.monotonic() > deadline:
                    raise TimeoutError("the deadline passed")
    except (OSError, ValueError, http.client.HTTPException) as exc:  # HTTPError, URLError, ...
        raise errors.ImageLoadError(
            f"URL {_short(url)} failed ({exc}); check it, or download the image and pass its path"
        ) from exc
    _check_size(len(data), origin, max_bytes)
    return bytes(data), origin


def _decode(source: bytes | Image.Image, origin: str, max_pixels: int) -> Image.Image:
    from transformers.image_utils import load_image as transformers_load_image

    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            with warnings.catch_warnings():  # the size check below says it more clearly
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(source))
        except Image.DecompressionBombError as exc:
            raise errors.ImageTooLargeError(
                f"{origin}: {exc} Shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS."
            ) from exc
        except Exception as exc:  # UnidentifiedImageError, or a corrupt header
            raise errors.ImageDecodeError(
                f"{origin} is not an image PIL can read (starts {source[:8]!r}); pass a PNG or JPEG"
            ) from exc
    if (pixels := image.width * image.height) > max_pixels:
        raise errors.ImageTooLargeError(
            f"{origin} is {image.width} x {image.height} = {pixels} pixels, over {max_pixels=}; "
            "shrink it (image.thumbnail) or raise max_pixels"
        )
    try:
        return transformers_load_image(image)
    except Exception as exc:
        raise errors.ImageDecodeError(
            f"{origin} is truncated or corrupt ({type(exc).__name__}: {exc}); save it again as PNG"
        ) from exc


def example_image(
    description: str = "a red circle and a blue square", size: tuple[int, int] = (448, 336)
) -> Image.Image:
    """Draw a toy picture the tiny models know: ``"a <colour> <shape>"``, or two joined by "and".

    >>> example_image("a yellow triangle", size=(224, 168)).getpixel((112, 84))
    (240, 200, 30)
    """
    one = rf"a ({'|'.join(_COLOURS)}) (circle|square|triangle)"
    if not re.fullmatch(rf"{one}( and {one})?", str(description)):
        raise ValueError(
            f"cannot draw {description!r}: write 'a <colour> <shape>', or two joined by ' and ', "
            f"with a colour of {list(_COLOURS)} and a shape of circle, square or triangle"
        )
    parts = [part.split() for part in description.split(" and ")]
    width, height = size
    short = min(width, height)
    side = (0.5 if len(parts) == 1 else min(0.4, 0.4 * width / short)) * short
    image = Image.new("RGB", size, (255, 255, 255))
    pen = ImageDraw.Draw(image)
    places = [0.5] if len(parts) == 1 else [0.28, 0.72]
    for (_, colour, shape), x in zip(parts, places, strict=True):
        cx, cy, half, fill = x * width, 0.5 * height, side / 2, _COLOURS[colour]
        box = (cx - half, cy - half, cx + half, cy + half)
        if shape == "circle":
            pen.ellipse(box, fill=fill)
        elif shape == "square":
            pen.rectangle(box, fill=fill)
        else:
            pen.polygon([(cx, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill)
    return image


def image_to_base64(image: Any) -> str:
    """The base64 text of ``image`` (anything :func:`load_image` takes) saved as RGB PNG."""
    buffer = io.BytesIO()
    load_image(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_to_data_url(image: Any) -> str:
    """``image`` (anything :func:`load_image` takes) as a ``data:image/png;base64,...`` URL."""
    return f"data:image/png;base64,{image_to_base64(image)}"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_images(folder: str | os.PathLike[str]) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (only this machine can connect) and yield its URL."""
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"serve_images needs an existing folder, got {folder!r}")
    handler = functools.partial(_QuietHandler, directory=os.path.abspath(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="serve_images", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
