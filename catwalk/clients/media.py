"""Images and videos on local disk: read product photos, render and check MP4s.

Uses Pillow for pictures, the ffmpeg bundled with imageio-ffmpeg to encode, and PyAV to
probe (there is no ffprobe binary on our machines).
"""

from __future__ import annotations

import errno
import io
import logging
import subprocess
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError

from catwalk.domain import VideoFacts
from catwalk.errors import ProductImageError, StorageError, VideoCheckError

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # Gemini refuses inline requests over 20 MB anyway.
_FETCH_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def read_image_source(source: str) -> bytes:
    """The bytes of a product photo given as a path, a ``file://`` URI or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        try:
            with httpx.Client(timeout=_FETCH_TIMEOUT, follow_redirects=True) as client:
                response = client.get(source)
        except httpx.HTTPError as exc:
            raise ProductImageError(f"cannot fetch image {source}: {exc}") from exc
        if response.status_code != 200:
            raise ProductImageError(f"cannot fetch image {source}: HTTP {response.status_code}")
        data = response.content
    else:
        path = Path(source.removeprefix("file://")).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ProductImageError(f"image file not found: {path}") from exc
        except OSError as exc:
            raise ProductImageError(f"cannot read image {path}: {exc.strerror}") from exc
    if len(data) > MAX_IMAGE_BYTES:
        raise ProductImageError(f"image {source} is larger than 20 MB")
    return data


def normalize_image(data: bytes, *, source: str = "image") -> tuple[bytes, Image.Image]:
    """Decode a photo and re-encode it as RGB JPEG (what every provider accepts)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ProductImageError(f"{source} is not a readable image") from exc
    if min(rgb.size) < 32:
        raise ProductImageError(f"{source} is too small ({rgb.width}x{rgb.height})")
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=92)
    return out.getvalue(), rgb


def identify_image(data: bytes, *, source: str = "image") -> tuple[str, int, int]:
    """Format, width and height from the file's header, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format or "", img.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ProductImageError(f"{source} is not a readable image") from exc
    if min(width, height) < 32:
        raise ProductImageError(f"{source} is too small ({width}x{height})")
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
