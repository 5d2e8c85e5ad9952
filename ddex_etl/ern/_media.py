"""The technical details of an audio file in each ERN version's element order (read from the file, see models.AudioDetails).

The builder writes what the record says and nothing else; a value outside
the version's allowed values, or not a positive number, is left out (the
details are optional in every version's XSD, the file itself is not).
"""
from __future__ import annotations

import functools
from typing import Any

from ._text import iso_duration

# AudioCodecType values our probe can name, per version (ERN 3.8.2's list has no AMR, Atmos or MQA).
_CODECS = frozenset({"PCM", "FLAC", "MP3", "AAC", "Vorbis", "ALaw", "MuLaw", "ADPCM", "MP2", "WMA"})
_CONTAINERS = frozenset({"WAV", "AIFF", "Ogg", "MP4", "QuickTime"})


def _positive(value: Any) -> bool:
    return type(value) in (int, float) and value > 0


def _khz(rate: int | float) -> str:
    return f"{rate / 1000:.3f}".rstrip("0").rstrip(".")


def audio_details_xml(version: str, details: Any) -> str:
    """The elements before ``File`` in a 4.3 ``DeliveryFile`` (after its ``Type``), or in a 4.2 / 3.8.2
    ``TechnicalDetails`` (after its reference): container (4.3, 3.8.2), codec, channels, sampling rate, bits per
    sample, duration."""
    if details is None:
        return ""
    try:
        return _cached(version, details)
    except TypeError:  # an unhashable stand-in for AudioDetails (the library API takes any record)
        return _details(version, details)


@functools.lru_cache(maxsize=256)
def _cached(version: str, details: Any) -> str:
    return _details(version, details)


def _details(version: str, details: Any) -> str:
    out = ""
    container = getattr(details, "container", None)
    if version != "4.2" and container in _CONTAINERS:
        out += f"<ContainerFormat>{container}</ContainerFormat>"
    codec = getattr(details, "codec", None)
    if codec in _CODECS:
        out += f"<AudioCodecType>{codec}</AudioCodecType>"
    channels = getattr(details, "channels", None)
    if type(channels) is int and channels > 0:
        out += f"<NumberOfChannels>{channels}</NumberOfChannels>"
    rate = getattr(details, "sample_rate", None)
    if _positive(rate):
        out += f'<SamplingRate UnitOfMeasure="kHz">{_khz(rate)}</SamplingRate>'
    bits = getattr(details, "bits_per_sample", None)
    if type(bits) is int and bits > 0:
        out += f"<BitsPerSample>{bits}</BitsPerSample>"
    seconds = getattr(details, "duration_seconds", None)
    if _positive(seconds) and seconds < 360_000:
        out += f"<Duration>{iso_duration(seconds)}</Duration>"
    return out


def color_depth(bits: int | None) -> str:
    """An image's ``ColorDepth`` (bits per pixel; the same element in every version), '' when unknown."""
    return f"<ColorDepth>{bits}</ColorDepth>" if type(bits) is int and bits > 0 else ""
