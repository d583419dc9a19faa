#!/usr/bin/env python3
"""Shrinks a screenshot PNG: 8-bit RGB(A) in, a 256-colour palette PNG out (a 40-step grey
ramp, so that anti-aliased text stays smooth, and the 216 most used other colours; every
colour maps to its nearest). Standard library only, so that scripts/status-screenshot.sh
needs no image tool.

    scripts/png-palette.py IN.png OUT.png
"""
import struct
import sys
import zlib


def chunks(data):
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def unfilter(raw, width, height, bpp):
    stride = width * bpp
    rows = []
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        kind = raw[pos]
        row = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                row[i] = (row[i] + prev[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] = (row[i] + pred) & 0xFF
        elif kind != 0:
            raise SystemExit(f"unknown PNG filter {kind}")
        rows.append(row)
        prev = row
    return rows


GREYS = [round(i * 255 / 39) for i in range(40)]


def is_grey(c):
    return max(c) - min(c) < 8


def palette_of(counts):
    colours = [c for c, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if not is_grey(c)]
    return [(v, v, v) for v in GREYS] + colours[: 256 - len(GREYS)]


def nearest(c, palette):
    return min(
        range(len(palette)),
        key=lambda i: sum((a - b) * (a - b) for a, b in zip(c, palette[i])),
    )


def main(src, dst):
    data = open(src, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{src}: not a PNG")
    idat = b""
    for kind, body in chunks(data):
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
    if depth != 8 or colour not in (2, 6):
        raise SystemExit(f"{src}: only 8-bit RGB or RGBA (got depth {depth}, colour type {colour})")
    bpp = 3 if colour == 2 else 4
    rows = unfilter(zlib.decompress(idat), width, height, bpp)
    counts = {}
    for row in rows:
        for i in range(0, len(row), bpp):
            key = bytes(row[i : i + 3])
            counts[key] = counts.get(key, 0) + 1
    palette = palette_of({tuple(k): n for k, n in counts.items()})
    index = {k: nearest(tuple(k), palette) for k in counts}
    out = bytearray()
    for row in rows:
        out.append(0)
        for i in range(0, len(row), bpp):
            out.append(index[bytes(row[i : i + 3])])

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
    png += chunk(b"PLTE", b"".join(bytes(c) for c in palette))
    png += chunk(b"IDAT", zlib.compress(bytes(out), 9))
    png += chunk(b"IEND", b"")
    open(dst, "wb").write(png)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
