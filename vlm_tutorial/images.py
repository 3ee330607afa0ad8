"""Load images from every form SGLang accepts, and draw a built-in example image.

:func:`load_image` turns a PIL image, a file path, an ``http(s)://`` URL, raw
bytes, a base64 string or a ``data:image/...;base64,`` URL into an RGB
``PIL.Image.Image``. It ends the way ``transformers.image_utils.load_image``
does (``ImageOps.exif_transpose``, then RGB) and adds what that function
lacks:

* an existing file wins, and a string that looks like a path but names no
  file fails with ``file not found: <path>`` instead of a base64 error;
* base64 is decoded strictly (``validate=True``), so junk text is an error;
* downloads have a finite timeout that bounds the whole download (however
  slowly the server sends), a size cap enforced while reading, and their
  HTTP status is checked;
* encoded inputs (files, URLs, bytes, base64) are capped in bytes before
  decoding, and images over :data:`DEFAULT_MAX_PIXELS` pixels (PIL's default
  ``Image.MAX_IMAGE_PIXELS``) are refused from their header, before any pixel
  is decoded (``max_pixels=`` or ``VLM_TUTORIAL_MAX_IMAGE_PIXELS`` changes it);
* the image is decoded inside the error handling (``Image.load()``), so a
  truncated file fails here rather than later inside a processor;
* transparency is composited on white and 16-bit images are scaled to
  8 bits, where a plain ``convert("RGB")`` drops alpha and clips to white.

Errors come from :mod:`vlm_tutorial.errors`: :class:`ImageLoadError`
(an ``OSError``: nothing could be read), :class:`ImageTooLargeError` (an
``ImageLoadError``: over ``max_bytes`` or ``max_pixels``), :class:`ImageDecodeError` (a
``ValueError``: bytes were read but are not an image) and
:class:`UnsupportedImageSourceError` (a ``TypeError``: an unaccepted kind of
input).

The other helpers produce the raw forms that ``Engine.generate(image_data=...)``
takes: :func:`image_to_bytes`, :func:`image_to_base64`,
:func:`image_to_data_url`, :func:`save_example_image` (an absolute path) and
:func:`serve_images` (a URL served from 127.0.0.1, so no internet is needed).

Example:
    >>> from vlm_tutorial.images import example_image, image_to_data_url, load_image
    >>> image = example_image()
    >>> image.size, image.mode
    ((448, 336), 'RGB')
    >>> load_image(image_to_data_url(image)).tobytes() == image.tobytes()
    True
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import http.client
import io
import ipaddress
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias, cast

import numpy as np
from PIL import Image, ImageOps

from .offline import toys
from .errors import (
    ImageDecodeError,
    ImageLoadError,
    ImageTooLargeError,
    UnsupportedImageSourceError,
)

ImageSource: TypeAlias = Image.Image | str | os.PathLike | bytes | bytearray | memoryview
"""Everything :func:`load_image` accepts."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a download may take in all (connecting, waiting and reading)."""

DEFAULT_MAX_BYTES = 50 * 2**20
"""Largest encoded image, in bytes, accepted from a file, URL, bytes or base64 (50 MiB)."""

DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
"""Largest image, in pixels (width x height), :func:`load_image` decodes: 89,478,485.

It equals PIL's default ``Image.MAX_IMAGE_PIXELS``, above which PIL only
warns (and refuses at twice as many). Change it per call with
``max_pixels=``, or for every call with :data:`MAX_PIXELS_ENV`.
"""

MAX_PIXELS_ENV = "VLM_TUTORIAL_MAX_IMAGE_PIXELS"
"""Environment variable that replaces :data:`DEFAULT_MAX_PIXELS` (a positive integer)."""

EXAMPLE_IMAGE_SIZE = toys.DEFAULT_SIZE
"""Default ``(width, height)`` of :func:`example_image`.

Both sides are multiples of 28 and 112, so Qwen2.5-VL keeps the size as it is
(a 24 x 32 patch grid, 192 image tokens).
"""

EXAMPLE_DESCRIPTION = "a red circle and a blue square"
"""What :func:`example_image` shows, in the words the tiny models answer with."""

ACCEPTED_KINDS = (
    "a PIL.Image.Image, "
    "a file path (str or pathlib.Path), "
    "an http:// or https:// URL, "
    "raw bytes (bytes, bytearray or memoryview), "
    "a base64 string, "
    "or a data:image/...;base64, URL"
)

_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]*")
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")
# How the base64 of PNG, JPEG, GIF, WebP and TIFF files begins.
_BASE64_IMAGE_STARTS = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "SUkqA", "TU0AK")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WHITE = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_CHUNK = 64 * 1024
_PIL_BOMB_PIXELS = re.compile(r"Image size \((\d+) pixels\)")


def load_image(
    source: ImageSource,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int | None = None,
) -> Image.Image:
    """Load ``source`` as a new, fully decoded RGB ``PIL.Image.Image``.

    Strings are tried in this order: ``http(s)://`` URL, ``data:`` URL,
    ``file://`` URL, existing file, something that looks like a path (then
    ``file not found``), strict base64. EXIF orientation is applied.
    Transparent pixels (RGBA, LA, PA, and P/L/RGB with a transparency key)
    are composited on white; 16-bit images are scaled to 8 bits; every other
    mode (L, P, 1, CMYK, YCbCr, ...) goes through ``convert("RGB")``.

    SGLang's own loader does ``convert("RGB")`` without EXIF rotation or a
    white background. To send identical pixels in every request format, load
    once with this function and pass the resulting image (or its bytes).

    Args:
        source: a PIL image, a path, an ``http(s)://`` URL, raw bytes, a base64
            string or a ``data:image/...;base64,`` URL.
        timeout: seconds a download may take in all (connecting, headers and
            body, however slowly the server sends); finite and positive.
        max_bytes: largest encoded image accepted from a file, URL, bytes or
            base64 text, checked before decoding.
        max_pixels: largest ``width * height`` accepted, checked from the
            image header before its pixels are decoded; ``None`` reads
            ``VLM_TUTORIAL_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.

    Returns:
        A new RGB image; ``source`` itself is left unchanged.

    Raises:
        ImageLoadError: missing file, unreachable URL, HTTP error status or
            timeout.
        ImageTooLargeError: more than ``max_bytes`` encoded bytes or more
            than ``max_pixels`` pixels (an ``ImageLoadError``).
        ImageDecodeError: corrupt or truncated data, a non-image file, or
            text that is neither an existing path nor valid base64.
        UnsupportedImageSourceError: ``source`` is of another kind.

    Example:
        >>> from vlm_tutorial.images import example_image, image_to_base64
        >>> image = load_image(image_to_base64(example_image((64, 48))))
        >>> image.mode, image.size
        ('RGB', (64, 48))
    """
    _check_limits(timeout, max_bytes)
    limits = _Limits(max_bytes, _resolve_max_pixels(max_pixels))
    if isinstance(source, Image.Image):
        return _finish(source, "the PIL image", limits)
    if isinstance(source, bytes | bytearray | memoryview):
        size = source.nbytes if isinstance(source, memoryview) else len(source)
        origin = f"the raw image data ({type(source).__name__}, {size} bytes)"
        if size > max_bytes:
            raise ImageTooLargeError(_too_large(origin, size, max_bytes))
        return _decode(bytes(source), origin, limits)
    if isinstance(source, os.PathLike):
        path = os.fsdecode(os.fspath(source))
        return _decode(*_read_file(path, max_bytes), limits)
    if isinstance(source, str):
        return _load_string(source, timeout=timeout, limits=limits)
    hint = (
        " To load several images, call load_image on each one."
        if isinstance(source, list | tuple)
        else ""
    )
    raise UnsupportedImageSourceError(
        f"cannot load an image from {type(source).__name__} {_short(source)}.{hint} "
        f"Pass one of: {ACCEPTED_KINDS}."
    )


class _Limits(NamedTuple):
    """The size limits of one :func:`load_image` call."""

    max_bytes: int
    max_pixels: int


def _resolve_max_pixels(max_pixels: int | None) -> int:
    """``max_pixels``, else the :data:`MAX_PIXELS_ENV` variable, else :data:`DEFAULT_MAX_PIXELS`."""
    if max_pixels is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(
                f"the environment variable {MAX_PIXELS_ENV}={text!r} must be a positive "
                f"integer number of pixels, e.g. {MAX_PIXELS_ENV}=200000000; unset it for "
                f"the default {DEFAULT_MAX_PIXELS}"
            )
        return value
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int):
        raise TypeError(f"max_pixels must be an int or None, got {max_pixels!r}")
    if max_pixels <= 0:
        raise ValueError(
            f"max_pixels must be > 0, got {max_pixels!r}; the default is {DEFAULT_MAX_PIXELS}"
        )
    return max_pixels


def _check_limits(timeout: float, max_bytes: int) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be finite and > 0 seconds, got {timeout!r}; try 10.0")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int, got {max_bytes!r}")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes!r}; try 50 * 2**20")


def _load_string(text: str, *, timeout: float, limits: _Limits) -> Image.Image:
    stripped = text.strip()
    if not stripped:
        raise ImageDecodeError(
            f"the image source is an empty string ({text!r}). Pass a path, a URL or base64 text."
        )
    scheme_match = _URL_SCHEME.match(stripped)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme in ("http", "https"):
        return _decode(*_fetch_url(stripped, timeout=timeout, max_bytes=limits.max_bytes), limits)
    if stripped[:5].lower() == "data:":
        return _decode_data_url(stripped, limits)
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlparse(stripped).path)
        return _decode(*_read_file(path, limits.max_bytes), limits)
    if scheme:
        raise UnsupportedImageSourceError(
            f"cannot load an image from {_short(text)}: the {scheme}:// scheme is not supported. "
            f"Download it first and pass its path, or pass one of: {ACCEPTED_KINDS}."
        )
    path = os.path.expanduser(text)
    if os.path.isfile(path) or os.path.isdir(path) or _looks_like_path(stripped):
        return _decode(*_read_file(path, limits.max_bytes), limits)
    return _decode_base64(stripped, limits)


def _looks_like_path(text: str) -> bool:
    """True for text that reads like a file name or path rather than base64.

    Text that starts like the base64 of a PNG, JPEG, GIF, WebP or TIFF file,
    or is longer than any path can be (4096 characters), is base64. A file
    suffix (``cat.jpg``) marks a path, as ``.`` is not a base64 character.
    Separators count only beside non-base64 characters, since ``/`` is one
    (a JPEG's base64 starts with ``/9j/``).
    """
    if text.startswith(_BASE64_IMAGE_STARTS) or len(text) > 4096:
        return False
    if text.startswith(("~", "./", "../", ".\\", "..\\")) or _FILE_SUFFIX.search(text):
        return True
    has_separator = "/" in text or "\\" in text
    return has_separator and not _BASE64_TEXT.fullmatch(text)


def _read_file(path: str, max_bytes: int) -> tuple[bytes, str]:
    shown = repr(path)
    if os.path.isdir(path):
        raise ImageLoadError(f"{shown} is a directory, not an image file. Pass the path of a file.")
    if not os.path.isfile(path):
        raise ImageLoadError(
            f"file not found: {_clip(path)} (absolute: {_clip(os.path.abspath(path))}). "
            "Check the spelling and the working directory "
            f"({os.getcwd()}), or pass an absolute path."
        )
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ImageTooLargeError(_too_large(f"file {shown}", size, max_bytes))
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except ImageLoadError:
        raise
    except OSError as exc:
        raise ImageLoadError(f"cannot read file {shown}: {exc}. Check its permissions.") from exc
    if len(data) > max_bytes:
        raise ImageTooLargeError(_too_large(f"file {shown}", len(data), max_bytes))
    return data, f"file {shown}"


def _too_large(what: str, size: int, max_bytes: int) -> str:
    return (
        f"{what} holds more than max_bytes={max_bytes} bytes ({size} read or announced). "
        "Pass a larger max_bytes to load_image, or shrink the image first."
    )


def _fetch_url(url: str, *, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    """Download ``url`` within ``timeout`` seconds in all, reading at most ``max_bytes``.

    The download runs in a daemon thread that this one waits for until the
    deadline, so nothing the server does (a slow DNS answer, headers or body
    sent a few bytes at a time) keeps the caller waiting longer. The thread
    itself reads with a socket timeout and stops at its next read after the
    deadline.
    """
    deadline = time.monotonic() + timeout
    outcome: list[tuple[bytes, str] | BaseException] = []
    worker = threading.Thread(
        target=_download_into,
        args=(outcome, url, deadline, timeout, max_bytes),
        name="load_image download",
        daemon=True,
    )
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not outcome:  # still running at the deadline
        raise ImageLoadError(f"URL {_clip(url)} {_timed_out(timeout)}. {_OFFLINE_FIX}")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


_OFFLINE_FIX = (
    "Check the URL; on a machine without internet, download the image "
    "elsewhere and pass its path, bytes or base64 instead."
)


def _timed_out(timeout: float) -> str:
    return (
        f"timed out after timeout={timeout} seconds (the whole download must finish in "
        "that time; pass a larger timeout for a slow server)"
    )


def _download_into(
    outcome: list[tuple[bytes, str] | BaseException],
    url: str,
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> None:
    """Run :func:`_download` and append its result, or the error it raised, to ``outcome``."""
    try:
        outcome.append(_download(url, deadline, timeout, max_bytes))
    except BaseException as exc:  # handed to the waiting thread, which raises it
        outcome.append(exc)


def _download(url: str, deadline: float, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    try:
        request = urllib.request.Request(
            url, headers={"User-Agent": "vlm-tutorial", "Accept": "image/*,*/*;q=0.5"}
        )
        # A proxy cannot reach this machine's loopback interface: talk to it directly.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(url) else []
        opener = urllib.request.build_opener(*handlers)
        with opener.open(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "unknown")
            announced = response.headers.get("Content-Length")
            if announced and announced.isdigit() and int(announced) > max_bytes:
                raise ImageTooLargeError(_too_large(f"URL {url}", int(announced), max_bytes))
            chunks: list[bytes] = []
            received = 0
            # read1 returns what one socket read brings, so the deadline is checked
            # after every packet, not after every 64 KiB.
            read = getattr(response, "read1", response.read)
            while True:
                if time.monotonic() >= deadline:
                    raise TimeoutError
                chunk = read(_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise ImageTooLargeError(_too_large(f"URL {url}", received, max_bytes))
                chunks.append(chunk)
    except ImageLoadError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ImageLoadError(
            f"HTTP error {exc.code} ({exc.reason}) while downloading {url}. {_OFFLINE_FIX}"
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            detail = _timed_out(timeout)
        elif isinstance(exc, urllib.error.URLError):
            detail = f"could not be reached ({str(reason) or type(reason).__name__})"
        elif isinstance(exc, ValueError):
            detail = f"is not a valid URL ({exc})"
        else:
            detail = f"failed during the download ({type(exc).__name__}: {exc})"
        raise ImageLoadError(f"URL {_clip(url)} {detail}. {_OFFLINE_FIX}") from exc
    return b"".join(chunks), f"the body of URL {url} (Content-Type: {content_type})"


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _decode_data_url(url: str, limits: _Limits) -> Image.Image:
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise ImageDecodeError(
            f"data URL {_short(url)} is not base64-encoded. "
            "Expected 'data:image/<type>;base64,<base64 text>', as image_to_data_url() writes."
        )
    origin = f"the base64 of data URL {_short(url)}"
    try:
        data = _strict_b64decode(payload, origin, limits.max_bytes)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(
            f"the data URL {_short(url)} holds invalid base64 after the comma ({exc}). "
            "Rebuild it with image_to_data_url(image)."
        ) from exc
    return _decode(data, origin, limits)


def _decode_base64(text: str, limits: _Limits) -> Image.Image:
    origin = f"the string {_short(text)} (no such file; decoded as base64)"
    try:
        data = _strict_b64decode(text, origin, limits.max_bytes)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(
            f"the string {_short(text)} is not an existing file, an http(s) URL, "
            f"nor valid base64 ({exc}). Pass an existing path, an http(s) URL, or the "
            "base64 text of a PNG/JPEG/WebP file (image_to_base64(image) writes one)."
        ) from exc
    return _decode(data, origin, limits)


def _strict_b64decode(text: str, origin: str, max_bytes: int) -> bytes:
    """Decode base64 strictly, refusing text that would decode to more than ``max_bytes``."""
    compact = "".join(text.split())  # line breaks of MIME-wrapped base64 are fine
    size = len(compact) // 4 * 3 - (len(compact) - len(compact.rstrip("=")))
    if size > max_bytes:
        raise ImageTooLargeError(_too_large(origin, size, max_bytes))
    return base64.b64decode(compact, validate=True)


def _decode(data: bytes, origin: str, limits: _Limits) -> Image.Image:
    """Open encoded image bytes, check their pixel count, then decode and normalise them."""
    if not data:
        raise ImageDecodeError(f"{origin} is empty (0 bytes). Pass the bytes of an image file.")
    try:
        with warnings.catch_warnings():
            # This module refuses large images itself, with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"{origin} is not an image PIL can read (first bytes: {data[:16]!r}). "
            "Pass a PNG, JPEG, WebP, GIF, BMP or TIFF image."
        ) from exc
    except Image.DecompressionBombError as exc:  # over twice PIL's own limit
        found = _PIL_BOMB_PIXELS.search(str(exc))
        pixels = int(found.group(1)) if found else None
        raise ImageTooLargeError(_too_many_pixels(origin, pixels, None, limits)) from exc
    except Exception as exc:  # PIL raises many types for corrupt headers
        raise _corrupt(origin, exc, data) from exc
    return _finish(image, origin, limits, data)


def _too_many_pixels(
    origin: str, pixels: int | None, size: tuple[int, int] | None, limits: _Limits
) -> str:
    """The message for an image over ``limits.max_pixels``, or over PIL's own hard limit."""
    shape = f"{size[0]} x {size[1]} = {pixels} pixels" if size else f"{pixels} pixels"
    fix = (
        "Shrink the image (image.thumbnail((4096, 4096)) keeps its aspect ratio), or raise "
        f"the limit with load_image(..., max_pixels=N) or the environment variable "
        f"{MAX_PIXELS_ENV}=N."
    )
    if pixels is not None and pixels <= limits.max_pixels:  # PIL's limit, not ours, refused it
        return (
            f"{origin} is an image of {shape}: max_pixels={limits.max_pixels} allows it, but "
            f"PIL refuses more than twice PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS} "
            "pixels. Raise PIL.Image.MAX_IMAGE_PIXELS too (None turns PIL's check off)."
        )
    return (
        f"{origin} is an image of {shape if pixels else 'too many pixels'}, more than "
        f"max_pixels={limits.max_pixels}; refused before decoding its pixels. {fix}"
    )


def _finish(
    image: Image.Image, origin: str, limits: _Limits, data: bytes | None = None
) -> Image.Image:
    """Check the size, then decode pixels, apply EXIF orientation and convert to RGB."""
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(_too_many_pixels(origin, width * height, (width, height), limits))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except Exception as exc:  # truncated data surfaces here, as OSError, SyntaxError, ...
        raise _corrupt(origin, exc, data) from exc


def _corrupt(origin: str, exc: Exception, data: bytes | None = None) -> ImageDecodeError:
    head = "" if data is None else f" (first bytes: {data[:16]!r})"
    return ImageDecodeError(
        f"{origin}{head} could not be decoded as an image: {type(exc).__name__}: {exc}. "
        "The data is truncated or corrupt: re-download or re-save the image (PNG or JPEG)."
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Return a new RGB copy: alpha composited on white, 16-bit scaled to 8-bit."""
    if image.mode.startswith("I;16") or (image.mode == "I" and _band_max(image) > 255):
        pixels = np.asarray(image).astype(np.int64).clip(0, 65535) >> 8
        image = Image.fromarray(pixels.astype(np.uint8))  # 2-D uint8: mode L
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _band_max(image: Image.Image) -> float:
    """The largest value of a one-band image: ``getextrema()`` is ``(min, max)`` for one band."""
    return cast("tuple[float, float]", image.getextrema())[1]


def _short(value: Any, limit: int = 80) -> str:
    """A repr of ``value`` cut to ``limit`` characters, with the full length when cut."""
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, str):
        size = f"{len(value)} characters"
    elif isinstance(value, bytes | bytearray):
        size = f"{len(value)} bytes"
    elif isinstance(value, list | tuple | dict | set):
        size = f"{len(value)} items"
    else:
        size = "truncated"
    return _clip(repr(value), limit, size)


def _clip(text: str, limit: int = 200, size: str = "") -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({size or f'{len(text)} characters'})"


def example_image(size: tuple[int, int] = EXAMPLE_IMAGE_SIZE) -> Image.Image:
    """Draw the package's example picture: :data:`EXAMPLE_DESCRIPTION`, a red circle and a blue square.

    It is a toy picture of :mod:`vlm_tutorial.offline.toys` (the kind the tiny
    models are trained on), drawn with PIL at call time and identical on
    every call: a red circle on the left and a blue square on the right, on
    white. ``toys.draw(description)`` draws others, e.g. ``"a yellow triangle"``.

    Args:
        size: ``(width, height)`` in pixels, each at least 28. The drawing
            scales with it.

    Returns:
        A new RGB image.

    Example:
        >>> image = example_image()
        >>> image.size
        (448, 336)
        >>> image.getpixel((10, 10)), image.getpixel((125, 168)), image.getpixel((323, 168))
        ((255, 255, 255), (220, 40, 40), (40, 80, 220))
    """
    return toys.draw(EXAMPLE_DESCRIPTION, size=size)


def save_example_image(path: str | os.PathLike, size: tuple[int, int] = EXAMPLE_IMAGE_SIZE) -> Path:
    """Write :func:`example_image` to ``path`` and return its absolute path.

    The format follows the suffix (``.png``, ``.jpg``, ...); missing parent
    folders are created. The path is absolute because SGLang 0.5.17 reads
    only absolute paths (or ``file://`` URLs) as files: a relative path is
    mistaken for base64.

    Example:
        >>> import tempfile
        >>> path = save_example_image(Path(tempfile.mkdtemp()) / "house.png")
        >>> path.is_absolute(), load_image(path).size
        (True, (448, 336))
    """
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    example_image(size).save(target)
    return target


def image_to_bytes(image: ImageSource, format: str = "PNG") -> bytes:
    """Encode ``image`` (anything :func:`load_image` accepts) as image-file bytes.

    Example:
        >>> image_to_bytes(example_image((64, 48)))[:4]
        b'\\x89PNG'
    """
    buffer = io.BytesIO()
    load_image(image).save(buffer, format=format)
    return buffer.getvalue()


def image_to_base64(image: ImageSource, format: str = "PNG") -> str:
    """Encode ``image`` as base64 text of a ``format`` file (the form SGLang decodes).

    Example:
        >>> image_to_base64(example_image((64, 48)), format="JPEG")[:4]
        '/9j/'
    """
    return base64.b64encode(image_to_bytes(image, format)).decode("ascii")


def image_to_data_url(image: ImageSource, format: str = "PNG") -> str:
    """Encode ``image`` as a ``data:image/<type>;base64,...`` URL.

    Example:
        >>> image_to_data_url(example_image((64, 48)))[:22]
        'data:image/png;base64,'
    """
    mime = Image.MIME.get(format.upper(), f"image/{format.lower()}")
    return f"data:{mime};base64,{image_to_base64(image, format)}"


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves files from one folder without logging each request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_images(directory: str | os.PathLike) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 and yield its base URL.

    The server picks a free port, runs in a daemon thread and is shut down
    when the ``with`` block ends. Use it to show the URL form of an image on
    a machine without internet. Only this machine can connect.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = save_example_image(folder / "house.png")
        >>> with serve_images(folder) as base_url:
        ...     load_image(f"{base_url}/house.png").size
        (448, 336)
    """
    folder = Path(directory).expanduser().resolve()
    if not folder.is_dir():
        raise NotADirectoryError(
            f"serve_images needs an existing folder, got {os.fspath(directory)!r} "
            f"(resolved to {folder}). Create it first or pass another folder."
        )
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="serve_images", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


__all__ = [
    "ACCEPTED_KINDS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TIMEOUT",
    "EXAMPLE_DESCRIPTION",
    "EXAMPLE_IMAGE_SIZE",
    "ImageSource",
    "MAX_PIXELS_ENV",
    "example_image",
    "image_to_base64",
    "image_to_bytes",
    "image_to_data_url",
    "load_image",
    "save_example_image",
    "serve_images",
]
