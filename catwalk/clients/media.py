"""Images and videos on local disk: read product photos, render and check MP4s.

Uses Pillow for pictures, the ffmpeg bundled with imageio-ffmpeg to encode, and PyAV to
probe (there is no ffprobe binary on our machines).

Product photos come from catalog feeds, that is from outside: ``read_image_source`` is the
one door they come through. URLs are fetched by ``fetch_media`` (http(s) only, every hop's
address checked *before* connecting, on the address actually connected to, so neither a
redirect nor DNS rebinding reaches the loopback, the LAN or a cloud metadata service; a
redirect limit, a byte cap and a total deadline). Local paths are read only inside
``MEDIA_IMPORT_ROOTS``.
"""

from __future__ import annotations

import errno
import io
import ipaddress
import logging
import socket
import subprocess
import time
import typing
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from PIL import Image, UnidentifiedImageError

from catwalk.domain import VideoFacts
from catwalk.errors import ProductImageError, StorageError, VideoCheckError

if typing.TYPE_CHECKING:
    from catwalk.config import Settings

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # Gemini refuses inline requests over 20 MB anyway.
MAX_REDIRECTS = 3
# The whole fetch (DNS, connect, TLS, every read) must end within this: a server sending a
# byte every few seconds would pass any per-read timeout and hold the job for ever.
FETCH_DEADLINE_SECONDS = 30.0
_CONNECT_TIMEOUT = 5.0
# What a photo's first bytes look like; anything else is refused before Pillow sees it.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
_ACCEPTED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


AnyIP = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressRule = typing.Callable[[AnyIP, int], bool]


class _Refused(Exception):
    """Raised inside the HTTP stack (by the network backend) to stop a fetch."""


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses.

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4, Teredo) are
    judged by the IPv4 address they carry, or ``::ffff:127.0.0.1`` would pass.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None and not is_public_address(inner):
            return False
    return not (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the fetch's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _Refused(f"took longer than {FETCH_DEADLINE_SECONDS:g} s")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, self._left(timeout))
        except httpcore.ReadTimeout:
            if time.monotonic() >= self._deadline:
                raise _Refused(f"took longer than {FETCH_DEADLINE_SECONDS:g} s") from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # type: ignore[no-untyped-def]
        inner = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, checks each address, and connects to the checked one.

    Checking in the socket layer (not on the URL) is what stops DNS rebinding: the address
    judged is the address connected to, and nothing is sent to a refused one.
    """

    def __init__(self, *, allowed: AddressRule, deadline: float) -> None:
        self._allowed = allowed
        self._deadline = deadline

    def connect_tcp(  # type: ignore[override]
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address=None,
        socket_options=None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise _Refused(f"cannot resolve {host}") from exc
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if not self._allowed(ip, port):
                raise _Refused(
                    f"{host} resolves to a non-public address ({ip}); "
                    "set ALLOW_PRIVATE_MEDIA_HOSTS=true to fetch photos from your own network"
                )
            left = self._deadline - time.monotonic()
            try:
                sock = _connect(
                    family, kind, proto, sockaddr, max(0.01, min(timeout or _CONNECT_TIMEOUT, left))
                )
            except OSError as exc:
                last = exc
                continue
            # httpcore exports no public sync stream type; the pinned httpcore has this one.
            sync_stream = httpcore._backends.sync.SyncStream  # type: ignore[attr-defined]
            return _DeadlineStream(sync_stream(sock), self._deadline)
        raise httpcore.ConnectError(str(last or f"cannot connect to {host}"))


def _connect(
    family: int, kind: int, proto: int, sockaddr: typing.Any, timeout: float
) -> socket.socket:
    """Open a TCP connection to an address the guard has already accepted."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _guarded_client(*, allowed: AddressRule, deadline: float) -> httpx.Client:
    transport = httpx.HTTPTransport(retries=0)
    # httpx builds its pool without a way to pass a network backend: swap the pool for one
    # that connects through the guard (same TLS defaults as httpx's own).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        network_backend=_GuardedBackend(allowed=allowed, deadline=deadline),
        max_connections=4,
        retries=0,
    )
    return httpx.Client(
        transport=transport,
        follow_redirects=False,  # followed by hand: each hop is checked and counted
        trust_env=False,  # no proxy from the environment: the guard must see the real peer
        timeout=httpx.Timeout(FETCH_DEADLINE_SECONDS, connect=_CONNECT_TIMEOUT),
        headers={"Accept": "image/*", "Accept-Encoding": "identity"},
    )


def _shown(url: str) -> str:
    """A URL for messages: no query string or credentials (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Refused("only http(s) URLs with a host are fetched")
    return url


def fetch_media(
    url: str,
    *,
    allow_private: bool = False,
    max_bytes: int = MAX_IMAGE_BYTES,
    deadline_seconds: float = FETCH_DEADLINE_SECONDS,
    max_redirects: int = MAX_REDIRECTS,
    allowed: AddressRule | None = None,
) -> bytes:
    """The body of an outside image URL, within every limit, or one ProductImageError.

    ``allowed(ip, port)`` decides which connected addresses may be used (default: public
    addresses only, or any with ``allow_private``); tests pass their own to stand a local
    server in for "the shop on the internet".
    """
    if allowed is None:
        allowed = (
            (lambda _ip, _port: True)
            if allow_private
            else (lambda ip, _port: is_public_address(ip))
        )
    deadline = time.monotonic() + deadline_seconds
    current = url
    try:
        _checked_url(current)
        with _guarded_client(allowed=allowed, deadline=deadline) as client:
            for _hop in range(max_redirects + 1):
                with client.stream("GET", current) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = _checked_url(urljoin(current, location))
                        continue
                    if response.status_code != 200:
                        raise _Refused(f"HTTP {response.status_code}")
                    return _read_body(response, max_bytes)
            raise _Refused(f"more than {max_redirects} redirects")
    except _Refused as exc:
        raise ProductImageError(f"cannot fetch image {_shown(url)}: {exc}") from None
    except httpx.HTTPError as exc:
        raise ProductImageError(f"cannot fetch image {_shown(url)}: {exc}") from exc


def _read_body(response: httpx.Response, max_bytes: int) -> bytes:
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not kind.startswith(_ACCEPTED_TYPES):
        raise _Refused(f"not an image (content type {kind or 'missing'!r})")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _Refused(f"larger than {max_bytes // (1024 * 1024)} MB")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > max_bytes:
            raise _Refused(f"larger than {max_bytes // (1024 * 1024)} MB")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not looks_like_image(data):
        raise _Refused("not an image (its first bytes are not JPEG, PNG, GIF or WebP)")
    return data


def looks_like_image(data: bytes) -> bool:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return any(data.startswith(magic) for magic, _ in _MAGIC)


def import_roots(settings: Settings) -> list[Path]:
    """Folders local photo paths may come from (``MEDIA_IMPORT_ROOTS``)."""
    raw = settings.media_import_roots
    if raw:
        roots = [
            Path(p.strip()).expanduser() for p in raw.replace(";", ",").split(",") if p.strip()
        ]
    else:
        roots = [Path.cwd(), settings.catwalk_home]
    return [r.resolve() for r in roots]


def local_photo_path(source: str, *, settings: Settings) -> Path:
    """The real file a local photo reference names, if it lies inside ``MEDIA_IMPORT_ROOTS``.

    The one rule for local photos: jobs, imports and the dashboard's links all go through it.

    Raises:
        ProductImageError: not a local reference, unresolvable, or outside the roots.
    """
    if "://" in source and not source.startswith("file://"):
        raise ProductImageError("a photo is a local path or an http(s) URL")
    path = Path(source.removeprefix("file://")).expanduser()
    try:
        # resolve() follows symlinks: a link inside a root pointing out of it is refused.
        real = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise ProductImageError(f"cannot read image {path}") from exc
    if not any(real.is_relative_to(root) for root in import_roots(settings)):
        raise ProductImageError(
            f"image path {path} is outside the folders photos are read from (MEDIA_IMPORT_ROOTS)"
        )
    return real


def read_image_source(source: str, *, settings: Settings | None = None) -> bytes:
    """The bytes of a product photo given as a path, a ``file://`` URI or an http(s) URL."""
    if settings is None:
        from catwalk.config import get_settings

        settings = get_settings()
    if source.startswith(("http://", "https://")):
        return fetch_media(source, allow_private=settings.allow_private_media_hosts)
    real = local_photo_path(source, settings=settings)
    path = Path(source.removeprefix("file://")).expanduser()
    try:
        with real.open("rb") as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ProductImageError(f"image file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise ProductImageError(
            f"cannot read image {path}: {getattr(exc, 'strerror', None) or 'unreadable'}"
        ) from exc
    if len(data) > MAX_IMAGE_BYTES:
        raise ProductImageError(f"image {source} is larger than 20 MB")
    return data


def _max_pixels() -> int:
    from catwalk.config import get_settings

    return get_settings().max_image_pixels


def _check_pixels(width: int, height: int, source: str) -> None:
    limit = _max_pixels()
    if width * height > limit:
        raise ProductImageError(
            f"{source} is too large ({width}x{height}, over {limit / 1e6:g} MP; MAX_IMAGE_PIXELS)"
        )


def _open(data: bytes, source: str) -> Image.Image:
    """Pillow's open reads only the header; our pixel cap replaces Pillow's bomb warning."""
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ProductImageError(f"{source} is too large to decode (MAX_IMAGE_PIXELS)") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ProductImageError(f"{source} is not a readable image") from exc


def normalize_image(data: bytes, *, source: str = "image") -> tuple[bytes, Image.Image]:
    """Decode a photo and re-encode it as RGB JPEG (what every provider accepts)."""
    img = _open(data, source)
    try:
        with img:
            _check_pixels(img.width, img.height, source)
            img.load()
            rgb = img.convert("RGB")
    except ProductImageError:
        raise
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError) as exc:
        raise ProductImageError(f"{source} is not a readable image") from exc
    if min(rgb.size) < 32:
        raise ProductImageError(f"{source} is too small ({rgb.width}x{rgb.height})")
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=92)
    return out.getvalue(), rgb


def identify_image(data: bytes, *, source: str = "image") -> tuple[str, int, int]:
    """Format, width and height from the file's header, without decoding the pixels."""
    with _open(data, source) as img:
        fmt, (width, height) = img.format or "", img.size
    if min(width, height) < 32:
        raise ProductImageError(f"{source} is too small ({width}x{height})")
    _check_pixels(width, height, source)
    return fmt, width, height


def load_product_image(images: list[str], *, product_id: str) -> bytes:
    """The first product photo as JPEG bytes, or a clear error."""
    if not images:
        raise ProductImageError(f"product {product_id!r} has no image")
    source = images[0]
    jpeg, _ = normalize_image(read_image_source(source), source=source)
    return jpeg


def frame_size(width: int) -> tuple[int, int]:
    """A 9:16 frame with even sides (H.264 with yuv420p needs both even)."""
    width -= width % 2
    height = round(width * 16 / 9)
    return width, height - height % 2


def render_transition(
    start_png: Path,
    end_png: Path,
    out_mp4: Path,
    *,
    duration_seconds: float,
    width: int,
    style: str,
    fps: int = 24,
) -> None:
    """Encode an H.264 (yuv420p, faststart) transition from one frame to the other.

    xfade's output lasts offset + the second input's length, so both inputs are trimmed to
    make the result exactly ``duration_seconds``: a short hold on each pose around the move.
    """
    import imageio_ffmpeg  # lazily: only the offline renderer and the fakes encode video

    w, h = frame_size(width)
    hold = min(0.75, duration_seconds / 4)
    move = duration_seconds - 2 * hold
    clip = duration_seconds - hold
    transition = "fade" if style == "smooth" else "smoothleft"
    scale = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,fps={fps}"
    graph = (
        f"[0:v]{scale},format=yuv420p[a];[1:v]{scale},format=yuv420p[b];"
        f"[a][b]xfade=transition={transition}:duration={move:.3f}:offset={hold:.3f},"
        "format=yuv420p[v]"
    )
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-loop",
        "1",
        "-t",
        f"{clip:.3f}",
        "-i",
        str(start_png),
        "-loop",
        "1",
        "-t",
        f"{clip:.3f}",
        "-i",
        str(end_png),
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        "-t",
        f"{duration_seconds:.3f}",
        str(out_mp4),
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except OSError as exc:
        raise _disk_error(exc, out_mp4) from exc
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()
        if any("No space left" in line for line in detail):
            raise StorageError(f"local disk is full while writing {out_mp4.parent}")
        raise VideoCheckError(f"ffmpeg failed: {detail[-1] if detail else result.returncode}")


def save_poster(frame_png: Path, out_jpg: Path, *, width: int) -> None:
    """A JPEG poster at the video's frame size."""
    w, h = frame_size(width)
    try:
        with Image.open(frame_png) as img:
            img.convert("RGB").resize((w, h)).save(out_jpg, format="JPEG", quality=88)
    except OSError as exc:
        raise _disk_error(exc, out_jpg) from exc


def poster_from_video(video: Path, out_jpg: Path) -> None:
    """A JPEG poster from a video's first frame (decoded with PyAV, saved with Pillow)."""
    import av  # lazily: a flow run needs PyAV only from the video step on

    try:
        with av.open(str(video)) as container:
            frame = next(container.decode(video=0))
            image = frame.to_image()
    except (av.FFmpegError, StopIteration, IndexError, OSError) as exc:
        raise VideoCheckError(f"the video file is not playable: {exc}") from exc
    try:
        image.convert("RGB").save(out_jpg, format="JPEG", quality=88)
    except OSError as exc:
        raise _disk_error(exc, out_jpg) from exc


def probe_video(path: Path) -> VideoFacts:
    """Duration, size and codec of an MP4, read with PyAV (decodes every frame)."""
    import av  # lazily, as in poster_from_video

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            pix_fmt = stream.codec_context.format.name if stream.codec_context.format else ""
            frames = 0
            last_time = 0.0
            for frame in container.decode(stream):
                frames += 1
                if frame.time is not None:
                    last_time = float(frame.time)
            rate = float(stream.average_rate or 24)
            duration = last_time + 1 / rate if frames else 0.0
            return VideoFacts(
                duration_seconds=round(duration, 3),
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                codec=codec,
                pixel_format=pix_fmt,
                size_bytes=path.stat().st_size,
                frames=frames,
            )
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise VideoCheckError(f"the video file is not playable: {exc}") from exc


def check_video(path: Path, *, expected_seconds: float) -> VideoFacts:
    """Refuse to publish a video that is empty, cut short or in a codec browsers can't play."""
    facts = probe_video(path)
    if facts.frames == 0 or facts.duration_seconds <= 0:
        raise VideoCheckError("the video has no frames")
    if facts.duration_seconds < expected_seconds * 0.5:
        raise VideoCheckError(
            f"the video lasts {facts.duration_seconds:.1f} s, expected about {expected_seconds} s"
        )
    if facts.codec not in ("h264", "hevc", "vp9", "av1"):
        raise VideoCheckError(f"the video's codec {facts.codec!r} does not play in browsers")
    return facts


def _disk_error(exc: OSError, path: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"local disk is full while writing {path.parent}")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")
