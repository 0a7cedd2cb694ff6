"""Tests of image decoding (imgclf.data.images): every format and mode to RGB, and refusals."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from imgclf.data.images import MAX_PIXELS, ImageError, decode_image, dhash, load_image

SIZE = 16


def encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(seed: int, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    a = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(a[..., 0] if channels == 1 else a, mode)


def smooth(seed: int, size: int = 64) -> Image.Image:
    """A photo-like image: random blobs blurred, so small re-encodings barely change it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def check_shape(pixels: np.ndarray, size: int = SIZE) -> None:
    assert pixels.shape == (size, size, 3)
    assert pixels.dtype == np.uint8


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (20, 20)) -> Image.Image:
    return Image.new("RGB", size, colour)


# --- formats and modes ----------------------------------------------------------------


def test_rgb_png_keeps_its_colour() -> None:
    pixels = decode_image(encode(solid((200, 30, 90)), "PNG"), SIZE)
    check_shape(pixels)
    assert (pixels == [200, 30, 90]).all()


@pytest.mark.parametrize("size", [16, 32, 100])
def test_output_is_resized_to_a_square(size: int) -> None:
    pixels = decode_image(encode(noise(1, (70, 30)), "PNG"), size)
    check_shape(pixels, size)


def test_resizing_keeps_the_layout() -> None:
    """Left half red, right half blue stays so after resizing."""
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30] = (255, 0, 0)
    a[:, 30:] = (0, 0, 255)
    pixels = decode_image(encode(Image.fromarray(a), "PNG"), SIZE)
    assert (pixels[:, :6] == [255, 0, 0]).all()
    assert (pixels[:, -6:] == [0, 0, 255]).all()


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = noise(2, mode="L")
    pixels = decode_image(encode(gray, "PNG"), SIZE)
    check_shape(pixels)
    assert (pixels[..., 0] == pixels[..., 1]).all()
    assert (pixels[..., 1] == pixels[..., 2]).all()
    assert pixels.std() > 10  # not flattened to one value


def test_rgba_transparency_becomes_white() -> None:
    a = np.zeros((20, 20, 4), np.uint8)
    a[:, :10] = (255, 0, 0, 255)  # opaque red
    a[:, 10:] = (0, 0, 255, 0)  # fully transparent blue: must come out white
    pixels = decode_image(encode(Image.fromarray(a, "RGBA"), "PNG"), 20)
    assert (pixels[:, :9] == [255, 0, 0]).all()
    assert (pixels[:, 11:] == [255, 255, 255]).all()


def test_rgba_half_transparent_is_blended_on_white() -> None:
    im = Image.new("RGBA", (10, 10), (0, 0, 0, 128))
    pixels = decode_image(encode(im, "PNG"), 10)
    assert np.all(np.abs(pixels.astype(int) - 127) <= 2)


def test_la_transparency_becomes_white() -> None:
    im = Image.new("LA", (10, 10), (0, 0))
    pixels = decode_image(encode(im, "PNG"), 10)
    assert (pixels == 255).all()


def test_palette_with_transparency() -> None:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    im.paste(1, (0, 0, 10, 20))  # left half: index 1 (dark), right half: index 0 (green)
    data = encode(im, "PNG", transparency=0)  # index 0 is transparent
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P"
        assert "transparency" in check.info
    pixels = decode_image(data, 20)
    assert (pixels[:, :9] == [10, 20, 30]).all()
    assert (pixels[:, 11:] == [255, 255, 255]).all()  # transparent, not green


def test_palette_without_transparency() -> None:
    im = solid((0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    pixels = decode_image(encode(im, "PNG"), SIZE)
    assert (pixels == [0, 128, 255]).all()


def test_rgb_with_transparent_colour_key() -> None:
    im = solid((1, 2, 3))
    im.paste((9, 9, 9), (0, 0, 10, 20))
    pixels = decode_image(encode(im, "PNG", transparency=(1, 2, 3)), 20)
    assert (pixels[:, :9] == 9).all()
    assert (pixels[:, 11:] == 255).all()


def test_cmyk_jpeg() -> None:
    im = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(im, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
    pixels = decode_image(data, SIZE)
    check_shape(pixels)
    r, g, b = pixels.reshape(-1, 3).mean(0)
    assert r > 200
    assert g < 60
    assert b < 60


def test_16_bit_grayscale_gradient_spans_the_range() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    im = Image.fromarray(ramp)  # uint16: mode I;16
    data = encode(im, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I")
    pixels = decode_image(data, 64)
    row = pixels[4, :, 0].astype(int)
    assert row[0] <= 10  # black stays black
    assert row[-1] >= 245  # the brightest stays bright
    assert 100 <= row[32] <= 155  # the middle is mid-gray, not clipped to white
    assert (np.diff(row) >= 0).all()  # still a ramp
    assert len(np.unique(row)) > 30


def test_16_bit_grayscale_values_above_255_are_not_clipped() -> None:
    """Two gray levels above 255 (a plain 8-bit conversion clips both to white) stay apart."""
    a = np.full((8, 16), 1000, np.uint16)
    a[:, 8:] = 3000
    pixels = decode_image(encode(Image.fromarray(a), "PNG"), 16).astype(int)
    left, right = pixels[:, :6, 0], pixels[:, -6:, 0]
    assert (left < right - 50).all()
    assert (left < 255).all()


def test_1_bit_image() -> None:
    im = Image.new("1", (20, 20), 0)
    im.paste(1, (10, 0, 20, 20))
    pixels = decode_image(encode(im, "PNG"), 20)
    assert (pixels[:, :9] == 0).all()
    assert (pixels[:, 11:] == 255).all()


@pytest.mark.parametrize("width", [80, 800])  # 800: JPEG draft decodes at 1/8 scale
def test_exif_orientation_is_applied(width: int) -> None:
    """Orientation 6 means "rotate 90° clockwise to view": left/right become top/bottom."""
    a = np.zeros((width // 2, width, 3), np.uint8)  # wider than high
    a[:, : width // 2] = (255, 0, 0)  # left half red
    a[:, width // 2:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())
    pixels = decode_image(data, 32).astype(int)
    top, bottom = pixels[:12], pixels[-12:]
    # Rotated clockwise, the left (red) half is now on top and the right (blue) at the bottom.
    assert (top[..., 0] > 200).all()
    assert (top[..., 2] < 60).all()
    assert (bottom[..., 2] > 200).all()
    assert (bottom[..., 0] < 60).all()


def test_without_exif_orientation_nothing_rotates() -> None:
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, :40] = (255, 0, 0)
    a[:, 40:] = (0, 0, 255)
    pixels = decode_image(encode(Image.fromarray(a), "JPEG", quality=95), 32).astype(int)
    assert (pixels[:, :12, 0] > 200).all()
    assert (pixels[:, -12:, 2] > 200).all()


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [solid((255, 0, 0)), solid((0, 0, 255)), solid((0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 3
    pixels = decode_image(data, SIZE)
    assert (pixels == [255, 0, 0]).all()


def test_jpeg_under_a_png_name(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(encode(solid((0, 200, 0)), "JPEG", quality=95))
    pixels = load_image(path, SIZE).astype(int)
    assert np.abs(pixels - [0, 200, 0]).max() <= 6


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "TIFF", "GIF"])
def test_other_formats(fmt: str) -> None:
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    pixels = decode_image(encode(solid((250, 120, 0)), fmt, **kwargs), SIZE)
    check_shape(pixels)
    assert np.abs(pixels.astype(int) - [250, 120, 0]).max() <= 4


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize(("width", "height"), [(4000, 20), (20, 4000), (3000, 1), (1, 3000)])
def test_extreme_aspect_ratios_are_squashed_to_a_square(fmt: str, width: int,
                                                        height: int) -> None:
    """Red then blue along the long side stays so, squashed (not cropped) to the square."""
    a = np.zeros((height, width, 3), np.uint8)
    if width > height:
        a[:, : width // 2], a[:, width // 2:] = (255, 0, 0), (0, 0, 255)
    else:
        a[: height // 2], a[height // 2:] = (255, 0, 0), (0, 0, 255)
    decoded = decode_image(encode(Image.fromarray(a), fmt, quality=95), SIZE)
    check_shape(decoded)
    pixels = decoded.astype(int)
    first, last = (pixels[:, :6], pixels[:, -6:]) if width > height else (pixels[:6], pixels[-6:])
    assert (first[..., 0] > 200).all() and (first[..., 2] < 60).all()
    assert (last[..., 2] > 200).all() and (last[..., 0] < 60).all()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_one_pixel_image_fills_the_square(fmt: str) -> None:
    pixels = decode_image(encode(solid((250, 120, 0), (1, 1)), fmt, quality=95), SIZE)
    check_shape(pixels)
    assert np.abs(pixels.astype(int) - [250, 120, 0]).max() <= 8


@pytest.mark.parametrize("name", ["photo.JPG", "Photo.PNG", "snap.JPEG", "été à la plage.png",
                                  "日本語 の 名前.jpg", "cat 🐱.png"])
def test_names_with_capitals_spaces_and_non_ascii(tmp_path: Path, name: str) -> None:
    """The name plays no part in decoding: the bytes say what the format is."""
    fmt = "JPEG" if name.lower().endswith((".jpg", ".jpeg")) else "PNG"
    path = tmp_path / "snow leopard" / name
    path.parent.mkdir()
    path.write_bytes(encode(solid((0, 200, 0)), fmt, quality=95))
    assert np.abs(load_image(path, SIZE).astype(int) - [0, 200, 0]).max() <= 6


def test_large_jpeg_is_decoded_at_reduced_scale_correctly() -> None:
    """JPEG draft decoding must still give the requested size and the right picture."""
    a = np.zeros((800, 1200, 3), np.uint8)
    a[:400] = (255, 255, 255)  # top half white, bottom black
    pixels = decode_image(encode(Image.fromarray(a), "JPEG", quality=90), 24)
    check_shape(pixels, 24)
    assert (pixels[:10] > 230).all()
    assert (pixels[-10:] < 25).all()


def test_load_image_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    im = noise(3)
    im.save(path)
    assert np.array_equal(load_image(path, SIZE), decode_image(path.read_bytes(), SIZE))
    assert np.array_equal(load_image(str(path), SIZE), load_image(path, SIZE))


# --- unusable files -------------------------------------------------------------------


def test_empty_bytes() -> None:
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", SIZE)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(path, SIZE)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.jpg", SIZE)


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path, SIZE)


def test_truncated_jpeg() -> None:
    data = encode(noise(4, (64, 64)), "JPEG", quality=90)
    with pytest.raises(ImageError) as info:
        decode_image(data[: len(data) // 2], SIZE)
    assert str(info.value)


def test_truncated_png() -> None:
    data = encode(noise(5, (64, 64)), "PNG")
    with pytest.raises(ImageError):
        decode_image(data[: len(data) // 2], SIZE)


@pytest.mark.parametrize("text", [
    b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
    b"just some text\n" * 20,
])
def test_text_under_a_jpg_name(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(text)
    with pytest.raises(ImageError, match="not an image"):
        load_image(path, SIZE)


def test_image_error_is_a_value_error() -> None:
    assert issubclass(ImageError, ValueError)


def png_claiming(width: int, height: int) -> bytes:
    """A real small PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encode(Image.new("L", (4, 4)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_patched_png_header_is_valid() -> None:
    """The patching helper itself makes a readable PNG (so refusals below are for the size)."""
    assert decode_image(png_claiming(4, 4), 4).shape == (4, 4, 3)
    with Image.open(io.BytesIO(png_claiming(5000, 3000))) as im:
        assert im.size == (5000, 3000)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The format of the image at each call of Pillow's ``ImageFile.load`` (which decodes
    the pixels, and still runs) since the test began."""
    seen: list[str] = []
    load = ImageFile.ImageFile.load

    def counting_load(im: ImageFile.ImageFile) -> object:
        seen.append(im.format or "?")
        return load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return seen


# Pillow refuses a header itself above its own limit (Image.MAX_IMAGE_PIXELS, 89,478,485:
# a warning, made an error here; twice that: an error); below it, our MAX_PIXELS does.
@pytest.mark.parametrize(("width", "height", "reason"), [
    (30000, 30000, r"^refused as a decompression bomb \(Image size \(900000000 pixels\) "
                   r"exceeds limit of 178956970 pixels"),
    (9000, 8000, r"^9000x8000 pixels is more than the 64,000,000 allowed$"),
    (100_000, 1000, r"^refused as a decompression bomb \(Image size \(100000000 pixels\) "
                    r"exceeds limit of 89478485 pixels"),
])
def test_decompression_bomb_is_refused_before_decoding(width: int, height: int, reason: str,
                                                       decodes: list[str]) -> None:
    assert width * height > MAX_PIXELS
    with pytest.raises(ImageError, match=reason):
        decode_image(png_claiming(width, height), SIZE)
    assert decodes == []  # refused from the header: not one pixel decoded
    decode_image(png_claiming(4, 4), SIZE)
    assert decodes and set(decodes) == {"PNG"}  # the count sees a decode


def test_real_bilevel_bomb_file_is_refused(tmp_path: Path, decodes: list[str]) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageError, match=r"^refused as a decompression bomb"):
        load_image(path, SIZE)
    assert decodes == []


# --- dhash ----------------------------------------------------------------------------


def test_dhash_is_a_64_bit_int() -> None:
    h = dhash(np.asarray(noise(6)))
    assert isinstance(h, int)
    assert 0 <= h < 2**64


def test_dhash_is_deterministic() -> None:
    pixels = np.asarray(smooth(7))
    assert dhash(pixels) == dhash(pixels.copy())


def test_dhash_survives_jpeg_reencoding() -> None:
    im = smooth(8, 128)
    high = decode_image(encode(im, "JPEG", quality=95), 64)
    low = decode_image(encode(im, "JPEG", quality=40), 64)
    assert not np.array_equal(high, low)
    assert hamming(dhash(high), dhash(low)) <= 3


def test_dhash_survives_resizing() -> None:
    im = smooth(9, 256)
    big = decode_image(encode(im, "PNG"), 128)
    small = decode_image(encode(im.resize((100, 100)), "PNG"), 32)
    assert hamming(dhash(big), dhash(small)) <= 3


def test_dhash_of_different_images_is_far() -> None:
    hashes = [dhash(decode_image(encode(smooth(seed), "PNG"), 32)) for seed in range(10, 20)]
    for i, a in enumerate(hashes):
        for b in hashes[i + 1:]:
            assert hamming(a, b) > 8


def test_dhash_sees_a_mirror_image_as_different() -> None:
    pixels = np.asarray(smooth(21))
    assert hamming(dhash(pixels), dhash(pixels[:, ::-1].copy())) > 8
