"""Synthetic domain shifts of a radiograph: what another hospital, scanner or user does to a
chest film before radpilot sees it.

Each shift takes greyscale pixels as the decoder gives them (float32 in [0, 1], bright =
dense) and a random generator, and returns new greyscale pixels in the same convention (the
size may change: borders grow the image, crops shrink it). They are deterministic for a given
generator state, never modify their input, and know nothing about any model, so the same
functions serve the domain-shift evaluation (`radpilot models evaluate domain-shift`) and
training as augmentation. `SHIFTS` names them all.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Lines a modality or a PACS viewer burns into the pixels (no real identity: made up).
BURNED_IN_LINES = ("PORTABLE  AP SUPINE", "2019-03-14 08:12", "ST. ELSEWHERE RADIOLOGY",
                   "KV 90  MAS 2.5", "ACC# 4471093")  # fmt: skip
WATERMARKS = ("SAMPLE", "CONFIDENTIAL", "NOT FOR DIAGNOSIS")


def _image(pixels: np.ndarray) -> PilImage:
    from PIL import Image

    return Image.fromarray(np.clip(pixels, 0, 1).astype(np.float32), mode="F")


def _pixels(image: PilImage) -> np.ndarray:
    return np.clip(np.asarray(image, dtype=np.float32), 0, 1)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def burned_in_text(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White text in the corners (laterality marker, dates, site, exposure) and a large
    semi-transparent diagonal watermark across the lungs."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = pixels.shape
    canvas = Image.fromarray(_to_uint8(pixels), mode="L")
    draw = ImageDraw.Draw(canvas)
    small = ImageFont.load_default(size=max(10, height // 28))
    margin = max(4, width // 60)
    lines = list(rng.permutation(BURNED_IN_LINES))[:3]
    for row, line in enumerate(lines):
        draw.text((margin, margin + row * height // 24), str(line), fill=255, font=small)
    draw.text((width - margin - width // 12, margin), "R", fill=255,
              font=ImageFont.load_default(size=max(14, height // 12)))  # fmt: skip
    draw.text((margin, height - margin - height // 24), str(rng.choice(BURNED_IN_LINES)),
              fill=255, font=small)  # fmt: skip
    # The watermark: drawn on its own layer, rotated, and blended in at 35-55 %.
    layer = Image.new("L", (width, height), 0)
    big = ImageFont.load_default(size=max(16, width // 8))
    mark = str(rng.choice(WATERMARKS))
    ImageDraw.Draw(layer).text((width // 2, height // 2), mark, fill=255, font=big, anchor="mm")
    layer = layer.rotate(float(rng.uniform(25, 40)), resample=Image.Resampling.BILINEAR)
    alpha = (np.asarray(layer, dtype=np.float32) / 255) * float(rng.uniform(0.35, 0.55))
    text = np.asarray(canvas, dtype=np.float32) / 255
    return np.clip(text * (1 - alpha) + alpha, 0, 1).astype(np.float32)


def black_borders(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The film inside a black frame (a scanned film, a screenshot of a viewer): 8-20 % of the
    width and height added in black, unevenly on each side."""
    height, width = pixels.shape
    top, bottom = (int(height * f) for f in rng.uniform(0.08, 0.20, size=2))
    left, right = (int(width * f) for f in rng.uniform(0.08, 0.20, size=2))
    return np.pad(pixels.astype(np.float32), ((top, bottom), (left, right)), constant_values=0)


def off_centre_crop(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window of 60-75 % of each side, pushed towards a random corner: part of the chest cut
    off and the rest off centre (a collimated or badly framed film, a zoomed screenshot)."""
    height, width = pixels.shape
    share = float(rng.uniform(0.60, 0.75))
    crop_h, crop_w = int(height * share), int(width * share)
    top = int(rng.choice([0, height - crop_h]))
    left = int(rng.choice([0, width - crop_w]))
    return pixels[top : top + crop_h, left : left + crop_w].astype(np.float32).copy()


def jpeg(pixels: np.ndarray, rng: np.random.Generator, quality: int = 20) -> np.ndarray:
    """Saved as a low-quality JPEG (blocking and ringing), as e-mailed or messaged films are."""
    from PIL import Image

    del rng  # deterministic
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(pixels), mode="L").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("L"), dtype=np.float32) / 255


def gamma(pixels: np.ndarray, rng: np.random.Generator, value: float = 1.0) -> np.ndarray:
    """Another display or processing curve: `pixels ** value` (0.5 washes out the lungs, 2.0
    darkens everything but bone)."""
    del rng  # deterministic
    return np.power(np.clip(pixels, 0, 1), value).astype(np.float32)


def rotate(pixels: np.ndarray, rng: np.random.Generator, degrees: float = 15.0) -> np.ndarray:
    """Turned by `degrees` either way (a tilted patient or cassette, a crooked scan), corners
    filled black, size kept."""
    from PIL import Image

    angle = degrees * float(rng.choice([-1.0, 1.0]))
    turned = _image(pixels).rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0.0)
    return _pixels(turned)


def downscale(pixels: np.ndarray, rng: np.random.Generator, side: int = 256) -> np.ndarray:
    """Reduced to `side` px on the longest side and enlarged back to its size: the detail of a
    thumbnail or a small web image at the original resolution."""
    from PIL import Image

    del rng  # deterministic
    height, width = pixels.shape
    scale = side / max(height, width)
    small = _image(pixels).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                  Image.Resampling.BILINEAR)  # fmt: skip
    return _pixels(small.resize((width, height), Image.Resampling.BILINEAR))


def invert(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inverted polarity (MONOCHROME1 read as MONOCHROME2, a viewer's invert key): bone dark,
    lungs bright."""
    del rng  # deterministic
    return (1.0 - np.clip(pixels, 0, 1)).astype(np.float32)


def screen_photo(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone photograph of the film on a monitor: a raised black level and lower contrast,
    a slight perspective (the screen's edges and the dark bezel in view), moiré from the
    screen's pixel grid, blur and noise, glare, and a colour cast (greyscale as the decoder
    makes it from the colour photo; a strong cast is refused earlier by the quality checks)."""
    from PIL import Image, ImageFilter

    from radpilot.tools.pixels import grey_from_rgb

    height, width = pixels.shape
    screen = 0.08 + 0.8 * np.clip(pixels, 0, 1)  # a monitor's black is grey, its white dimmer
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period, angle = float(rng.uniform(2.5, 4.0)), float(rng.uniform(0.1, 0.4))
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period
    screen = screen * (1 + 0.08 * np.sin(2 * np.pi * phase))  # the grid beating with the sensor
    glare_y, glare_x = rng.uniform(0.2, 0.8, size=2) * (height, width)
    glare = np.exp(-(((x - glare_x) ** 2 + (y - glare_y) ** 2) / (2 * (0.3 * width) ** 2)))
    screen = screen + 0.15 * glare
    # Perspective: the screen seen a little from the side, inside its dark bezel.
    inset = rng.uniform(0.03, 0.10, size=8) * np.tile([width, height], 4)
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    seen = corners + inset.reshape(4, 2) * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    warped = _image(np.clip(screen, 0, 1)).transform(
        (width, height), Image.Transform.PERSPECTIVE, _perspective(seen, corners),
        resample=Image.Resampling.BILINEAR, fillcolor=0.03,
    )  # fmt: skip
    grey = Image.fromarray(_to_uint8(_pixels(warped)), mode="L")
    blurred = grey.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.0, 2.0))))
    photo = np.asarray(blurred, dtype=np.float32) / 255
    photo = photo + rng.normal(0, 0.015, photo.shape).astype(np.float32)
    cast = np.array([1.0, 0.95, 0.82]) if rng.random() < 0.5 else np.array([0.85, 0.95, 1.0])
    rgb = np.clip(photo[..., None] * cast, 0, 1).astype(np.float32)
    return np.clip(grey_from_rgb(rgb)[0], 0, 1)


def _perspective(seen: np.ndarray, corners: np.ndarray) -> tuple[float, ...]:
    """PIL's 8 perspective coefficients mapping output pixels (the photo) to input pixels (the
    screen): output `seen[i]` shows input `corners[i]`."""
    rows = []
    for (u, v), (xs, ys) in zip(seen, corners, strict=True):
        rows.append([u, v, 1, 0, 0, 0, -xs * u, -xs * v])
        rows.append([0, 0, 0, u, v, 1, -ys * u, -ys * v])
    solution = np.linalg.solve(np.array(rows), corners.reshape(-1))
    return tuple(float(c) for c in solution)


SHIFTS: dict[str, Shift] = {
    "burned-in text": burned_in_text,
    "black borders": black_borders,
    "off-centre crop": off_centre_crop,
    "JPEG quality 20": partial(jpeg, quality=20),
    "gamma 0.5": partial(gamma, value=0.5),
    "gamma 2.0": partial(gamma, value=2.0),
    "rotation 15°": partial(rotate, degrees=15.0),
    "downscaled to 256 px": partial(downscale, side=256),
    "inverted polarity": invert,
    "photo of a screen": screen_photo,
}


def apply_shift(name: str, pixels: np.ndarray, seed: int) -> np.ndarray:
    """`SHIFTS[name]` with its own generator: the same image and seed give the same result."""
    return SHIFTS[name](pixels, np.random.default_rng(seed))
