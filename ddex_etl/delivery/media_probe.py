"""Technical details read from the media themselves: an audio file's headers (mutagen), a cover's (Pillow).

Stores check the audio and artwork they receive against the message, so the
message should say what the files are, not what the catalog believes:

* ``probe_audio(root, source)`` -> ``AudioDetails``: codec, container,
  channels, sample rate, bits per sample and the exact duration, as
  mutagen reads them from the file's headers (WAV, FLAC, AIFF, MP3, MP4/AAC,
  Ogg Vorbis/FLAC/Opus);
* ``probe_image(root, source)`` -> ``ImageDetails``: width, height, colour
  mode and format, as Pillow reads them from the image's header (no pixel is
  decoded).

Every file is opened through ``MediaRoot.open`` (no link followed, regular
files only, nothing over ``max_bytes``), and only its headers are read: a
few kilobytes through a seekable view (``HeaderView.bytes_read`` says how
many), however long the recording. The whole file is read once, later, when
it is copied into the batch with its MD5 checked on the way
(``resources.copy_resources``); that copy cannot carry the probe because the
message (which holds these details) is built first, and an unchanged
release is never copied at all.

A file the parsers cannot read raises ``ProbeError`` (what is wrong and the
fix); ``MediaRefused`` comes through as the media root raised it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ..models import AudioDetails
from .media_source import MAX_MEDIA_BYTES, MediaRoot

# Object stores: read ahead this much per request while probing (fsspec's default is megabytes).
_PROBE_BLOCK = 256 << 10

# WAVE format tags -> AudioCodecType (1 integer PCM, 3 IEEE float, 0xFFFE extensible: PCM samples).
_WAVE_CODECS = {1: "PCM", 3: "PCM", 0xFFFE: "PCM", 6: "ALaw", 7: "MuLaw", 2: "ADPCM", 0x11: "ADPCM", 0x55: "MP3"}
# Pillow's format names -> MIME types (the catalog's mime_type column) for the formats DDEX has an ImageCodecType for.
IMAGE_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "TIFF": "image/tiff",
              "JPEG2000": "image/jp2"}


class ProbeError(Exception):
    """A media file whose headers cannot be read: ``problem`` (naming the file) and ``fix``."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{problem}; fix: {fix}")


@dataclass(frozen=True, slots=True)
class ImageDetails:
    """What an image's header says."""

    width: int
    height: int
    mode: str  # Pillow's colour mode: RGB, L, CMYK, ...
    format: str  # Pillow's format name: JPEG, PNG, ...

    @property
    def mime_type(self) -> str | None:
        return IMAGE_MIME.get(self.format)


def _audio_details(kind: str, info: Any) -> AudioDetails:
    codec: str | None = None
    container: str | None = None
    if kind == "WAVE":
        container, codec = "WAV", _WAVE_CODECS.get(getattr(info, "audio_format", 1))
    elif kind == "FLAC":
        codec = "FLAC"
    elif kind == "AIFF":
        container, codec = "AIFF", "PCM"
    elif kind in ("MP3", "EasyMP3"):
        codec = "MP3"
    elif kind in ("MP4", "EasyMP4"):
        container = "MP4"
        name = str(getattr(info, "codec", ""))
        codec = "AAC" if name.startswith("mp4a.40") else "MP3" if name == "mp4a.6B" else None
    elif kind.startswith("Ogg"):
        container = "Ogg"
        codec = {"OggVorbis": "Vorbis", "OggFLAC": "FLAC"}.get(kind)
    bits = getattr(info, "bits_per_sample", None)
    length = getattr(info, "length", None)
    return AudioDetails(
        codec=codec,
        container=container,
        channels=int(info.channels) if getattr(info, "channels", None) else None,
        sample_rate=int(info.sample_rate) if getattr(info, "sample_rate", None) else None,
        bits_per_sample=int(bits) if bits else None,
        duration_seconds=round(float(length), 3) if length else None,
    )


def probe_audio(root: MediaRoot, source: str, *, max_bytes: int = MAX_MEDIA_BYTES,
                stats: dict[str, int] | None = None) -> AudioDetails:
    """The technical details of the audio file at ``source`` (relative to the media root), from its headers.

    ``stats["bytes_read"]``, when given, grows by what the probe read.
    """
    import mutagen

    with root.open(source, max_bytes=max_bytes, block_size=_PROBE_BLOCK) as media:
        view = media.header_view()
        try:
            parsed = mutagen.File(view)
        except (mutagen.MutagenError, ValueError, EOFError, OverflowError) as exc:  # a damaged header
            raise ProbeError(media.path, f"{media.path} is not an audio file ddex-etl can read ({exc})",
                             "replace it with the release's WAV, FLAC, AIFF, MP3 or AAC file, then retry the "
                             "release") from None
        finally:
            if stats is not None:
                stats["bytes_read"] = stats.get("bytes_read", 0) + view.bytes_read
    if parsed is None or getattr(parsed, "info", None) is None:
        raise ProbeError(media.path, f"{media.path} is not in an audio format ddex-etl can read",
                         "deliver the recording as WAV, FLAC, AIFF, MP3 or AAC (MP4), then retry the release")
    details = _audio_details(type(parsed).__name__, parsed.info)
    if not details.duration_seconds:
        raise ProbeError(media.path, f"{media.path} holds no audio (its headers give no length)",
                         "replace it with the complete recording, then retry the release")
    return details


def probe_image(root: MediaRoot, source: str, *, max_bytes: int = MAX_MEDIA_BYTES,
                stats: dict[str, int] | None = None) -> ImageDetails:
    """Width, height, colour mode and format of the image at ``source``, from its header (no pixel decoded).

    ``stats["bytes_read"]``, when given, grows by what the probe read.
    """
    from PIL import Image, UnidentifiedImageError

    with root.open(source, max_bytes=max_bytes, block_size=_PROBE_BLOCK) as media:
        view = media.header_view()
        try:
            with warnings.catch_warnings():
                # Size is checked against the recipient's limits below; a huge cover is not decoded here.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(view) as image:  # type: ignore[arg-type]
                    width, height = image.size
                    return ImageDetails(int(width), int(height), str(image.mode), str(image.format or ""))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
            raise ProbeError(media.path, f"{media.path} is not an image ddex-etl can read ({exc})",
                             "replace it with the release's cover as a JPEG or PNG, then retry the release") from None
        finally:
            if stats is not None:
                stats["bytes_read"] = stats.get("bytes_read", 0) + view.bytes_read
