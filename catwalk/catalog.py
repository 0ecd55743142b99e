"""The demo catalog: a handful of products whose photos catwalk draws itself (no downloads).

Each photo is a flat-lay of a garment on a studio background, drawn with Pillow, so the
demo and the tests have real, distinct product images on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 600


@dataclass(frozen=True, slots=True)
class DemoProduct:
    id: str
    name: str
    garment: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]


DEMO_PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct("demo-tee", "Coral crew-neck tee", "tee", (240, 110, 90), (255, 236, 220)),
    DemoProduct("demo-dress", "Indigo floral wrap dress", "dress", (52, 62, 140), (250, 205, 90)),
    DemoProduct("demo-jacket", "Olive utility jacket", "jacket", (110, 120, 70), (60, 60, 40)),
    DemoProduct("demo-hoodie", "Striped cotton hoodie", "hoodie", (230, 230, 236), (40, 90, 160)),
)


def _body(garment: str) -> list[tuple[float, float]]:
    s = SIZE
    if garment == "dress":
        return [(0.38, 0.12), (0.62, 0.12), (0.66, 0.38), (0.82, 0.9), (0.18, 0.9), (0.34, 0.38)]
    sleeve = 0.1 if garment == "tee" else 0.02
    hem = 0.86
    pts = [
        (0.36, 0.12),
        (0.64, 0.12),
        (0.86, 0.24),
        (0.86 + sleeve / 2, 0.28 + (0.4 if sleeve < 0.05 else 0.14)),
        (0.72, 0.44 if sleeve > 0.05 else 0.72),
        (0.72, hem),
        (0.28, hem),
        (0.28, 0.44 if sleeve > 0.05 else 0.72),
        (0.14 - sleeve / 2, 0.28 + (0.4 if sleeve < 0.05 else 0.14)),
        (0.14, 0.24),
    ]
    return [(x * s, y * s) for x, y in pts] if garment else pts


def draw_product(product: DemoProduct) -> Image.Image:
    """A flat-lay photo of the product."""
    img = Image.new("RGB", (SIZE, SIZE), (238, 238, 234))
    draw = ImageDraw.Draw(img)
    body = _body(product.garment)
    if product.garment == "dress":
        body = [(x * SIZE, y * SIZE) for x, y in body]
    draw.polygon([(x + 8, y + 10) for x, y in body], fill=(205, 205, 200))  # soft shadow
    draw.polygon(body, fill=product.colour, outline=(50, 50, 50))
    if product.garment == "hoodie":
        for y in range(int(0.2 * SIZE), int(0.86 * SIZE), 36):
            draw.rectangle([0.28 * SIZE, y, 0.72 * SIZE, y + 14], fill=product.accent)
        draw.ellipse(
            [0.4 * SIZE, 0.04 * SIZE, 0.6 * SIZE, 0.2 * SIZE], outline=(50, 50, 50), width=4
        )
    elif product.garment == "dress":
        for i, (fx, fy) in enumerate(
            [(0.45, 0.5), (0.55, 0.62), (0.4, 0.72), (0.6, 0.8), (0.5, 0.3)]
        ):
            r = 18 + 4 * (i % 2)
            draw.ellipse(
                [fx * SIZE - r, fy * SIZE - r, fx * SIZE + r, fy * SIZE + r], fill=product.accent
            )
    elif product.garment == "jacket":
        draw.line(
            [(0.5 * SIZE, 0.14 * SIZE), (0.5 * SIZE, 0.86 * SIZE)], fill=product.accent, width=6
        )
        for x in (0.36, 0.58):
            draw.rectangle(
                [x * SIZE, 0.5 * SIZE, (x + 0.08) * SIZE, 0.6 * SIZE],
                outline=product.accent,
                width=4,
            )
    else:
        draw.ellipse([0.42 * SIZE, 0.08 * SIZE, 0.58 * SIZE, 0.17 * SIZE], fill=product.accent)
        draw.text((0.43 * SIZE, 0.42 * SIZE), "catwalk", fill=product.accent, font_size=34)
    return img


def write_demo_photos(folder: Path) -> dict[str, Path]:
    """Draw every demo product's photo into ``folder``; returns product id -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for product in DEMO_PRODUCTS:
        path = folder / f"{product.id}.jpg"
        if not path.exists():
            draw_product(product).save(path, format="JPEG", quality=90)
        paths[product.id] = path
    return paths
