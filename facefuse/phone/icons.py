"""The app's icons, drawn with Pillow: two overlapping faces on green. Run
`python -m facefuse.phone.icons` to redraw the committed PNGs in facefuse/phone/app/icons/."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

ICON_DIR = Path(__file__).resolve().parent / "app" / "icons"
GREEN, LIGHT, PALE = (21, 128, 61), (250, 250, 249), (187, 247, 208)
SIZES = {"icon-192.png": (192, False), "icon-512.png": (512, False),
         "maskable-512.png": (512, True), "apple-touch-icon.png": (180, True)}


def draw_icon(size: int, full_bleed: bool) -> Image.Image:
    """One icon; `full_bleed` fills the square (maskable and Apple icons are cut by the OS)
    and keeps the drawing inside the central 80% safe zone."""
    scale = 4  # draw large, then downsample for smooth edges
    side = size * scale
    im = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    if full_bleed:
        d.rectangle((0, 0, side, side), fill=GREEN)
    else:
        d.rounded_rectangle((0, 0, side - 1, side - 1), radius=side // 5, fill=GREEN)
    r = side * (0.2 if full_bleed else 0.24)
    cy = side * 0.5
    for cx, colour in ((side * 0.39, PALE), (side * 0.61, LIGHT)):
        d.ellipse((cx - r, cy - r * 1.2, cx + r, cy + r * 1.2), fill=colour)
    # the overlap, where the two faces fuse
    left, right = Image.new("L", im.size, 0), Image.new("L", im.size, 0)
    ImageDraw.Draw(left).ellipse((side * 0.39 - r, cy - r * 1.2, side * 0.39 + r,
                                  cy + r * 1.2), fill=255)
    ImageDraw.Draw(right).ellipse((side * 0.61 - r, cy - r * 1.2, side * 0.61 + r,
                                   cy + r * 1.2), fill=255)
    im.paste((74, 222, 128, 255), (0, 0, side, side), ImageChops.multiply(left, right))
    return im.resize((size, size), Image.Resampling.LANCZOS)


def write_icons(folder: Path = ICON_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (size, full_bleed) in SIZES.items():
        path = folder / name
        draw_icon(size, full_bleed).save(path, optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_icons():
        print(path)
