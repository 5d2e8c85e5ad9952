"""Cover art: the release's front cover image (a store rejects a release without one).

The image needs a file, an MD5 sum and a MIME type DDEX has an image codec
for; width and height are optional, and whole pixels when given.
"""
from __future__ import annotations

from ...models import Release
from ..prepared import PCover
from .checker import MD5, Checker

# Cover art MIME types -> ImageCodecType (the same values in every ERN version).
IMAGE_CODECS = {
    "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF",
    "image/tiff": "TIFF", "image/jp2": "JPEG2000", "image/jpx": "JPEG2000",
}

# Colour modes (as Pillow names them, read from the file on the delivery side) -> ColorDepth, bits per pixel.
_COLOR_DEPTH = {"1": 1, "L": 8, "P": 8, "LA": 16, "PA": 16, "I;16": 16, "RGB": 24, "YCbCr": 24, "LAB": 24, "HSV": 24,
                "RGBA": 32, "RGBX": 32, "CMYK": 32, "I": 32, "F": 32}


def check_cover(ck: Checker, release: Release) -> PCover | None:
    """The front cover image, checked (a store rejects a release without one)."""
    cover = release.cover_image
    fix = "add the release's front cover (release_images: file, md5, width, height, mime_type)"
    if cover is None:
        ck.problem("cover_image", None, "the release has no front cover image (DDEX's release profiles require one)", fix)
        return None
    file = ck.text("cover_image.file", cover.file, True, fix)
    md5 = ck.ident("cover_image.md5", cover.md5, MD5, "an MD5 sum (32 hexadecimal digits)", True, "9e107d9d372bb6826bd81d3542a419d6")
    mime = ck.text("cover_image.mime_type", cover.mime_type, True, "set release_images.mime_type, e.g. image/jpeg")
    codec = IMAGE_CODECS.get(mime.lower()) if mime else None
    if mime and codec is None:
        ck.problem(
            "cover_image.mime_type", cover.mime_type, "is not an image type DDEX knows",
            f"use one of: {', '.join(sorted(IMAGE_CODECS))} (convert the image if needed)",
        )
    sizes: list[int | None] = []
    for name in ("width", "height"):
        v = getattr(cover, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            ck.problem(f"cover_image.{name}", v, "must be a whole number of pixels, 1 or more", f"set release_images.{name}, or leave it empty")
            v = None
        sizes.append(v)
    if file is None or md5 is None or codec is None:
        return None
    return PCover(file, md5.lower(), codec, sizes[0], sizes[1], _COLOR_DEPTH.get(cover.color_mode or ""))
