"""Small, real media files for the demo catalog: a WAV per track position, an image per cover kind.

``etl seed`` points every track at ``audio/<disc>-<track>.wav`` and every
cover at ``covers/cover-<side>.<jpg|png>`` under the media root, and stores
the MD5 of those very bytes, so ``etl run`` with the ``ddex-batch`` layout
copies and verifies real files. Files are shared between releases (the
same position, the same cover kind) so seeding stays fast: a few dozen
files whatever the catalog's size. Bytes are computed with integer
arithmetic only, so they and their MD5s are the same on every machine.

* Audio: 0.25 s of a triangle wave, 8 kHz, mono, 16-bit PCM in a RIFF/WAVE
  file; the pitch depends on the position, so the tracks of a release differ.
* Images: a uniform grey square of the size the catalog states, as a
  baseline JPEG (one 8x8 block after another, each "no change, end of
  block" under one-symbol Huffman tables) or as an 8-bit greyscale PNG.
"""
from __future__ import annotations

import hashlib
import os
import struct
import zlib
from functools import lru_cache
from pathlib import Path

_RATE = 8000
_SAMPLES = _RATE // 4


def audio_path(disc: int, number: int) -> str:
    """The media path of a track position (shared by every release)."""
    return f"audio/{disc:02d}-{number:02d}.wav"


def cover_path(side: int, ext: str) -> str:
    """The media path of a cover kind."""
    return f"covers/cover-{side}.{ext}"


@lru_cache(maxsize=None)
def wav_bytes(disc: int, number: int) -> bytes:
    """A short WAV file whose pitch depends on the track position."""
    period = max(8, 64 - ((disc * 7 + number * 3) % 56))  # samples per cycle
    half = period // 2
    amp = 8000
    samples = []
    for i in range(_SAMPLES):
        phase = i % period
        level = phase if phase < half else period - phase  # 0..half..0
        samples.append((level * 2 * amp) // half - amp)
    data = struct.pack(f"<{_SAMPLES}h", *samples)
    fmt = struct.pack("<HHIIHH", 1, 1, _RATE, _RATE * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


@lru_cache(maxsize=None)
def jpeg_bytes(width: int, height: int) -> bytes:
    """A uniform grey baseline JPEG of ``width`` x ``height`` pixels."""
    dqt = _segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    one_symbol = b"\x01" + b"\x00" * 15 + b"\x00"  # one code of length 1, for symbol 0
    dht = _segment(0xC4, b"\x00" + one_symbol) + _segment(0xC4, b"\x10" + one_symbol)
    sos = _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = 2 * blocks  # per block: DC difference category 0 ("0"), then end of block ("0")
    full, rest = divmod(bits, 8)
    scan = b"\x00" * full + (bytes([0xFF >> rest]) if rest else b"")  # padded with 1 bits
    return b"\xff\xd8" + dqt + sof + dht + sos + scan + b"\xff\xd9"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=None)
def png_bytes(width: int, height: int) -> bytes:
    """A uniform grey 8-bit greyscale PNG of ``width`` x ``height`` pixels."""
    row = b"\x00" + b"\x80" * width  # filter type 0, then the pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row * height, 9)) + _chunk(b"IEND", b"")


def cover_bytes(side: int, ext: str) -> bytes:
    return jpeg_bytes(side, side) if ext == "jpg" else png_bytes(side, side)


@lru_cache(maxsize=None)
def md5_of(path: str) -> str:
    """The MD5 of the demo file at a media path made by ``audio_path`` or ``cover_path``."""
    return hashlib.md5(file_bytes(path)).hexdigest()


def file_bytes(path: str) -> bytes:
    name = path.rsplit("/", 1)[-1]
    stem, ext = name.rsplit(".", 1)
    if path.startswith("audio/"):
        disc, number = stem.split("-")
        return wav_bytes(int(disc), int(number))
    return cover_bytes(int(stem.removeprefix("cover-")), ext)


def write_media(root: Path, paths: set[str]) -> int:
    """Write the demo files at ``paths`` under ``root`` (atomically; identical files are left alone)."""
    written = 0
    for rel in sorted(paths):
        data = file_bytes(rel)
        final = root / rel
        if final.is_file() and final.stat().st_size == len(data) and final.read_bytes() == data:
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, final)
        written += 1
    return written
