"""The user's own image as a render's start: checked, decoded and re-encoded by the API.

``init_image`` of ``POST /v1/renders`` carries a PNG or JPEG as a ``data:`` URL in the JSON body,
with ``strength`` (img2img of the whole canvas) and optionally a ``mask`` (white repaints) or
``regions_only`` (repaint only the canvas's local boxes). The bytes are bounded before decoding,
the pixels before the pixels are read (a decompression bomb never unpacks), and the image is
re-encoded as PNG at the render's size, so no byte of the upload reaches the worker.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import Annotated

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from omost_renderer.pipelines.rendering import MAX_SIDE, Strength

#: Largest decoded image (or mask) in bytes. Base64 grows it by 4/3, so one such image fits in
#: the default request body limit (``OMOST_RENDERER_MAX_REQUEST_BYTES``, 2,000,000 bytes).
MAX_INIT_IMAGE_BYTES = 1_400_000
#: Largest image in pixels (width x height), read from the header before decoding.
MAX_INIT_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
#: Characters of a ``data:`` URL: the base64 of ``MAX_INIT_IMAGE_BYTES`` and its header.
MAX_DATA_URL_CHARS = (MAX_INIT_IMAGE_BYTES + 2) // 3 * 4 + 64
#: Formats accepted, and the colour modes of each that convert to RGB without a guess.
FORMATS = ("PNG", "JPEG")
MODES = ("RGB", "RGBA", "L", "LA", "P", "1")
#: Default img2img strength of an init image.
DEFAULT_STRENGTH = 0.75

DataUrl = Annotated[str, StringConstraints(max_length=MAX_DATA_URL_CHARS)]
_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg);base64,(?P<data>[A-Za-z0-9+/=\s]*)$", re.S)


class InitImageError(ValueError):
    """An init image or mask that cannot be used; the message says why (a 400)."""

    def __init__(self, message: str, param: str) -> None:
        """Keep the request field at fault (``init_image.image`` or ``init_image.mask``)."""
        super().__init__(message)
        self.param = param


class InitImageRequest(BaseModel):
    """``init_image`` of ``POST /v1/renders``: start from your own picture."""

    model_config = ConfigDict(extra="forbid")

    image: DataUrl = Field(description="PNG or JPEG as a `data:image/png;base64,...` URL.")
    strength: Strength = Field(
        default=DEFAULT_STRENGTH,
        description="Share of the schedule to run (img2img strength): 1.0 ignores the image.",
    )
    mask: DataUrl | None = Field(
        default=None,
        description="PNG or JPEG mask of the same aspect: white repaints, black keeps.",
    )
    regions_only: bool = Field(
        default=False, description="Repaint only the canvas's local boxes (dilated, feathered)."
    )

    @model_validator(mode="after")
    def _one_area(self) -> InitImageRequest:
        if self.mask is not None and self.regions_only:
            raise ValueError("give `mask` or `regions_only`, not both")
        return self


class InitImage(BaseModel):
    """The init image on a job's request: where the re-encoded files are stored."""

    model_config = ConfigDict(extra="forbid")

    image_key: str
    strength: float
    mask_key: str | None = None
    regions_only: bool = False


def decode_data_url(url: str, param: str) -> Image.Image:
    """Decode and check one uploaded image.

    Args:
        url: ``data:image/png;base64,...`` or ``data:image/jpeg;base64,...``.
        param: The request field, for the error.

    Returns:
        The decoded image, fully loaded.

    Raises:
        InitImageError: Not a data URL, not base64, too many bytes or pixels, not a PNG or
            JPEG, corrupt, or a colour mode that has no plain RGB reading (CMYK, 16-bit).
    """
    match = _DATA_URL.match(url)
    if match is None:
        raise InitImageError("must be a data URL: data:image/png;base64,... or image/jpeg", param)
    try:
        data = base64.b64decode("".join(match["data"].split()), validate=True)
    except (binascii.Error, ValueError):
        raise InitImageError("the data URL is not valid base64", param) from None
    if len(data) > MAX_INIT_IMAGE_BYTES:
        raise InitImageError(
            f"the image is {len(data)} bytes; the limit is {MAX_INIT_IMAGE_BYTES}", param
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise InitImageError(f"the image is {image.format}; send PNG or JPEG", param)
            width, height = image.size
            if width * height > MAX_INIT_IMAGE_PIXELS:
                raise InitImageError(
                    f"the image is {width}x{height} = {width * height} pixels; the limit is"
                    f" {MAX_INIT_IMAGE_PIXELS} ({MAX_SIDE}x{MAX_SIDE})",
                    param,
                )
            if image.mode not in MODES:
                raise InitImageError(
                    f"the image's colour mode is {image.mode}; send RGB, RGBA, grayscale or"
                    " palette images (8 bits per channel)",
                    param,
                )
            image.load()
    except InitImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:  # fmt: skip
        raise InitImageError(f"the image cannot be decoded ({error})", param) from None
    return image


def reencode(image: Image.Image, width: int, height: int, *, mask: bool = False) -> bytes:
    """The image re-encoded as PNG at ``width`` x ``height`` (RGB, or L for a mask)."""
    if mask:
        converted = image.convert("L")
    elif image.mode in ("RGBA", "LA", "P"):
        # Transparent pixels become white rather than whatever colour they hide.
        rgba = image.convert("RGBA")
        converted = Image.new("RGB", rgba.size, (255, 255, 255))
        converted.paste(rgba, mask=rgba.getchannel("A"))
    else:
        converted = image.convert("RGB")
    resized = converted.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, format="PNG")
    return buffer.getvalue()
