"""Small, real media files for the demo catalog: recordings as long as the catalog says, covers as large.

``etl seed`` points every track at ``audio/<seconds>s.flac`` (a few at
``audio/<seconds>s.wav``) and every cover at ``covers/cover-<side>.<jpg|png>``
under the media root, and stores the MD5 of those very bytes and the
recording's exact length, so ``etl run`` with the ``ddex-batch`` layout
copies, verifies and probes real files whose technical details agree with
the catalog. Files are shared between releases (one per length in
``AUDIO_SECONDS``, one per cover kind) so seeding stays fast: a few dozen
files, about 2.5 MB together, whatever the catalog's size. Bytes are computed
with integer arithmetic only, so they and their MD5s are the same on every
machine.

* Recordings (``track_audio``): FLAC, 44.1 kHz, stereo, 16 bits, of digital
  silence (every frame one CONSTANT subframe per channel: a few bytes per
  4,096 samples, so minutes of CD-quality audio take kilobytes); the
  shortest length is a WAV instead (8 kHz, mono, 8-bit PCM: a triangle
  wave), so the demo ships both kinds.
* ``wav_bytes(disc, number)``: 0.25 s of a triangle wave, 8 kHz, mono,
  16-bit PCM, whose pitch depends on the position (for tests that need small
  distinct files).
* Images: a uniform grey square of the size the catalog states, in RGB, as a
  baseline JPEG (one 8x8 block per component after another, each "no
  change, end of block" under one-symbol Huffman tables) or as a PNG.
"""
from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Collection
from functools import lru_cache
from pathlib import Path

_RATE = 8000
_SAMPLES = _RATE // 4

# The lengths (whole seconds) of the demo recordings, one file each: more than a release has tracks.
AUDIO_SECONDS = tuple(range(92, 420, 8))
_WAV_SECONDS = frozenset({92})  # this length is a WAV file, the rest FLAC
_FLAC_RATE = 44100
_FLAC_BLOCK = 4096


def track_audio(drawn_seconds: int, taken: Collection[int] = ()) -> tuple[str, int]:
    """(media path, exact length in seconds) of the demo recording nearest ``drawn_seconds``.

    Lengths in ``taken`` (the release's other tracks) are skipped while any other is left, so the tracks of a
    release never point at the same file.
    """
    free = [s for s in AUDIO_SECONDS if s not in taken] or list(AUDIO_SECONDS)
    seconds = min(free, key=lambda s: (abs(s - drawn_seconds), s))
    return f"audio/{seconds}s.{'wav' if seconds in _WAV_SECONDS else 'flac'}", seconds


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


@lru_cache(maxsize=None)
def long_wav_bytes(seconds: int) -> bytes:
    """``seconds`` of a 250 Hz triangle wave: 8 kHz, mono, 8-bit (unsigned) PCM in a RIFF/WAVE file."""
    period = 32  # samples per cycle
    cycle = bytes(128 + ((i if i < period // 2 else period - i) * 2 * 48) // (period // 2) - 48 for i in range(period))
    data = cycle * (seconds * _RATE // period)
    fmt = struct.pack("<HHIIHH", 1, 1, _RATE, _RATE, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _crc_table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return table


_CRC8 = _crc_table(0x07, 8)
_CRC16 = _crc_table(0x8005, 16)


def _crc8(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def _crc16(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _utf8_number(n: int) -> bytes:
    """A FLAC frame number, coded as UTF-8 codes a character (up to 31 bits here)."""
    if n < 0x80:
        return bytes([n])
    for length, first in ((2, 0xC0), (3, 0xE0), (4, 0xF0), (5, 0xF8), (6, 0xFC)):
        if n < 1 << (5 * length + 1):
            tail = [0x80 | ((n >> (6 * i)) & 0x3F) for i in range(length - 1)]
            return bytes([first | (n >> (6 * (length - 1)))] + tail[::-1])
    raise ValueError(n)


_FRAMES: list[bytes] = []  # full frame n of any demo FLAC file: the same in every file


def _full_frames(count: int) -> bytes:
    """The first ``count`` full-size silent frames (they differ only in their number)."""
    if len(_FRAMES) < count:
        full = bytes([0xFF, 0xF8, 0xC9, 0x18])  # block size 4096, 44.1 kHz, 2 independent channels, 16 bits
        c8, c16 = _crc8(full), _crc16(full)  # the CRCs of the fixed start, computed once
        for n in range(len(_FRAMES), count):
            number = _utf8_number(n)
            tail = number + bytes([_crc8(number, c8)]) + b"\x00" * 6  # per channel: CONSTANT, value 0
            _FRAMES.append(full + tail + _crc16(tail, c16).to_bytes(2, "big"))
    return b"".join(_FRAMES[:count])


@lru_cache(maxsize=None)
def flac_bytes(seconds: int) -> bytes:
    """``seconds`` of digital silence as FLAC: 44.1 kHz, 2 channels, 16 bits, fixed 4,096-sample blocks."""
    total = seconds * _FLAC_RATE
    info = struct.pack(">HH", _FLAC_BLOCK, _FLAC_BLOCK) + b"\x00" * 6  # frame sizes: not given
    # 20 bits rate, 3 bits channels - 1, 5 bits bits per sample - 1, 36 bits total samples; then no MD5.
    packed = (_FLAC_RATE << 44) | (1 << 41) | (15 << 36) | total
    info += packed.to_bytes(8, "big") + b"\x00" * 16
    out = [b"fLaC", bytes([0x80, 0, 0, len(info)]), info]  # the last (only) metadata block: STREAMINFO
    subframes = b"\x00\x00\x00" * 2  # per channel: CONSTANT, no wasted bits, the value 0
    frames, last = divmod(total, _FLAC_BLOCK)
    out.append(_full_frames(frames))
    if last:  # a shorter last block: its size follows the number
        header = bytes([0xFF, 0xF8, 0x79, 0x18]) + _utf8_number(frames) + struct.pack(">H", last - 1)
        frame = header + bytes([_crc8(header)]) + subframes
        out.append(frame + struct.pack(">H", _crc16(frame)))
    return b"".join(out)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


@lru_cache(maxsize=None)
def jpeg_bytes(width: int, height: int) -> bytes:
    """A uniform grey baseline JPEG of ``width`` x ``height`` pixels, three components (YCbCr: an RGB image)."""
    dqt = _segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = _segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00")
    one_symbol = b"\x01" + b"\x00" * 15 + b"\x00"  # one code of length 1, for symbol 0
    dht = _segment(0xC4, b"\x00" + one_symbol) + _segment(0xC4, b"\x10" + one_symbol)
    sos = _segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
    blocks = 3 * ((width + 7) // 8) * ((height + 7) // 8)  # one block per component per 8x8 pixels
    bits = 2 * blocks  # per block: DC difference category 0 ("0"), then end of block ("0")
    full, rest = divmod(bits, 8)
    scan = b"\x00" * full + (bytes([0xFF >> rest]) if rest else b"")  # padded with 1 bits
    return b"\xff\xd8" + dqt + sof + dht + sos + scan + b"\xff\xd9"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=None)
def png_bytes(width: int, height: int) -> bytes:
    """A uniform grey 8-bit RGB PNG of ``width`` x ``height`` pixels."""
    row = b"\x00" + b"\x80" * (3 * width)  # filter type 0, then the pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
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
        if stem.endswith("s"):  # a recording of the seed: audio/<seconds>s.<flac|wav>
            return long_wav_bytes(int(stem[:-1])) if ext == "wav" else flac_bytes(int(stem[:-1]))
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
