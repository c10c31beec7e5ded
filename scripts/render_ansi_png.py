#!/usr/bin/env python3
"""Renders a terminal screen captured with ANSI colours (`tmux capture-pane
-e -p`) to a PNG that looks like a terminal window.

Understands SGR colours (16-colour, 256-colour and truecolor, in `;` and `:`
forms), bold, dim, italic, underline, strike-through, reverse and hidden;
skips every other escape sequence. Wide characters take two cells; box
drawing characters are drawn as lines so borders join up.

    render_ansi_png.py SCREEN.ansi OUT.png --cols 100 --rows 26 \
        [--cursor X,Y] [--title TEXT] [--font MONO.ttf] [--size PX] [--no-frame]

Needs Pillow (`pip install pillow`) and a monospace TrueType font (DejaVu
Sans Mono is found in the usual places; `apt-get install fonts-dejavu-core`).
"""

import argparse
import os
import re
import sys
import unicodedata

try:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
except ImportError:
    sys.exit("render_ansi_png: needs Pillow: pip install pillow")

# The Tango palette (GNOME Terminal, xfce4-terminal...): its bright colours
# stay apart from the normal ones, as the interface's sender colours need.
PALETTE = [
    (0x2E, 0x34, 0x36), (0xCC, 0x00, 0x00), (0x4E, 0x9A, 0x06), (0xC4, 0xA0, 0x00),
    (0x34, 0x65, 0xA4), (0x75, 0x50, 0x7B), (0x06, 0x98, 0x9A), (0xD3, 0xD7, 0xCF),
    (0x55, 0x57, 0x53), (0xEF, 0x29, 0x29), (0x8A, 0xE2, 0x34), (0xFC, 0xE9, 0x4F),
    (0x72, 0x9F, 0xCF), (0xAD, 0x7F, 0xA8), (0x34, 0xE2, 0xE2), (0xEE, 0xEE, 0xEC),
]
DEFAULT_FG = (0xD3, 0xD7, 0xCF)
DEFAULT_BG = (0x1C, 0x1C, 0x1C)
CURSOR = (0xAE, 0xAF, 0xAD)
TITLE_BAR = (0x32, 0x32, 0x32)
TITLE_FG = (0x9A, 0x9A, 0x9A)

MONO_FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/usr/share/fonts/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/dejavu-sans-mono-fonts/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "/usr/share/fonts/truetype/ubuntu/UbuntuMono-R.ttf",
    "/Library/Fonts/Menlo.ttc",
    "/System/Library/Fonts/Menlo.ttc",
]


def colour_256(n):
    """The RGB value of xterm colour `n` (0-255)."""
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        levels = [0, 95, 135, 175, 215, 255]
        return (levels[n // 36], levels[n // 6 % 6], levels[n % 6])
    grey = 8 + 10 * (n - 232)
    return (grey, grey, grey)


class Style:
    __slots__ = ("fg", "bg", "bold", "dim", "italic", "underline", "strike", "reverse", "hidden")

    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None  # None: the default colour
        self.bg = None
        self.bold = self.dim = self.italic = False
        self.underline = self.strike = self.reverse = self.hidden = False

    def copy(self):
        other = Style()
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        return other


def extended_colour(parts):
    """Colour from the parameters after 38/48: [5, n] or [2, (cs,) r, g, b]."""
    if not parts:
        return None, 0
    if parts[0] == 5 and len(parts) >= 2:
        return colour_256(max(0, min(255, parts[1]))), 2
    if parts[0] == 2 and len(parts) >= 4:
        r, g, b = parts[1:4]
        return (r & 255, g & 255, b & 255), 4
    return None, len(parts)


def apply_sgr(style, params):
    """Applies one SGR sequence's parameter string to `style`."""
    fields = params.split(";") if params else ["0"]
    i = 0
    while i < len(fields):
        field = fields[i]
        if ":" in field:  # ITU T.416 form: 38:2::r:g:b, 38:5:n, 4:3 ...
            sub = [int(x) if x else 0 for x in field.split(":")]
            if sub[0] in (38, 48, 58):
                rest = sub[1:]
                if rest and rest[0] == 2 and len(rest) >= 5:
                    rest = [2] + rest[2:5]  # skip the colour space id
                colour, _ = extended_colour(rest)
                if sub[0] == 38:
                    style.fg = colour
                elif sub[0] == 48:
                    style.bg = colour
            elif sub[0] == 4:
                style.underline = len(sub) < 2 or sub[1] != 0
            i += 1
            continue
        code = int(field) if field.isdigit() else 0
        if code in (38, 48, 58):
            values = [int(x) if x.isdigit() else 0 for x in fields[i + 1 :]]
            colour, used = extended_colour(values)
            if code == 38:
                style.fg = colour
            elif code == 48:
                style.bg = colour
            i += 1 + used
            continue
        if code == 0:
            style.reset()
        elif code == 1:
            style.bold = True
        elif code == 2:
            style.dim = True
        elif code == 3:
            style.italic = True
        elif code == 4:
            style.underline = True
        elif code == 7:
            style.reverse = True
        elif code == 8:
            style.hidden = True
        elif code == 9:
            style.strike = True
        elif code in (21, 22):
            style.bold = style.dim = False
        elif code == 23:
            style.italic = False
        elif code == 24:
            style.underline = False
        elif code == 27:
            style.reverse = False
        elif code == 28:
            style.hidden = False
        elif code == 29:
            style.strike = False
        elif 30 <= code <= 37:
            style.fg = PALETTE[code - 30]
        elif code == 39:
            style.fg = None
        elif 40 <= code <= 47:
            style.bg = PALETTE[code - 40]
        elif code == 49:
            style.bg = None
        elif 90 <= code <= 97:
            style.fg = PALETTE[code - 90 + 8]
        elif 100 <= code <= 107:
            style.bg = PALETTE[code - 100 + 8]
        i += 1


ESCAPE = re.compile(
    r"\x1b\[([0-9;:?<=>]*)([ -/]*)([@-~])"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[PX^_][^\x1b]*\x1b\\"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"  # other escapes
)


def char_width(ch):
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def parse(text, cols, rows):
    """The screen as rows of cells [char, Style]; wide characters are
    followed by a None cell."""
    screen = [[[" ", Style()] for _ in range(cols)] for _ in range(rows)]
    style = Style()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for y, line in enumerate(lines[:rows]):
        x = 0
        pos = 0
        while pos < len(line):
            m = ESCAPE.match(line, pos)
            if m:
                if m.group(3) == "m" and not m.group(2) and not (m.group(1) or "").startswith("?"):
                    apply_sgr(style, m.group(1))
                pos = m.end()
                continue
            ch = line[pos]
            pos += 1
            if ch == "\r" or (ord(ch) < 32 and ch != "\t") or ch == "\x7f":
                continue
            if ch == "\t":
                x = min(cols, (x // 8 + 1) * 8)
                continue
            width = char_width(ch)
            if width == 0:
                if x > 0:
                    screen[y][x - 1][0] += ch
                continue
            if x + width > cols:
                break
            screen[y][x] = [ch, style.copy()]
            if width == 2:
                screen[y][x + 1] = None
            x += width
    return screen


def blend(a, b, t):
    return tuple(round(a[i] * (1 - t) + b[i] * t) for i in range(3))


def cell_colours(style):
    fg = style.fg or DEFAULT_FG
    bg = style.bg or DEFAULT_BG
    if style.reverse:
        fg, bg = bg, fg
    if style.dim:
        fg = blend(fg, bg, 0.45)
    if style.hidden:
        fg = bg
    return fg, bg


# Box drawing: (left, right, up, down) arm weights, 1 light, 2 heavy, 3 double.
BOX = {}
for chars, arms in [
    ("─━═", (1, 1, 0, 0)), ("│┃║", (0, 0, 1, 1)),
    ("┌┏╔╭", (0, 1, 0, 1)), ("┐┓╗╮", (1, 0, 0, 1)),
    ("└┗╚╰", (0, 1, 1, 0)), ("┘┛╝╯", (1, 0, 1, 0)),
    ("├┣╠", (0, 1, 1, 1)), ("┤┫╣", (1, 0, 1, 1)),
    ("┬┳╦", (1, 1, 0, 1)), ("┴┻╩", (1, 1, 1, 0)), ("┼╋╬", (1, 1, 1, 1)),
]:
    for weight, ch in zip((1, 2, 3, 1), chars):
        BOX[ch] = tuple(a * weight for a in arms)
BLOCKS = {
    "█": (0, 0, 1, 1), "▀": (0, 0, 1, 0.5), "▄": (0, 0.5, 1, 1),
    "▌": (0, 0, 0.5, 1), "▐": (0.5, 0, 1, 1),
}


FALLBACK_FONTS = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansSymbols2-Regular.ttf",
]

_MISSING = {}


def missing_glyph(font):
    """The bitmap `font` draws for a character it does not have."""
    key = id(font)
    if key not in _MISSING:
        _MISSING[key] = bytes(font.getmask("\U0010fffd"))
    return _MISSING[key]


def has_glyph(font, missing, ch):
    try:
        return bytes(font.getmask(ch)) != missing
    except OSError:  # e.g. a bitmap-only font at this size
        return False


def find_font(path):
    if path:
        return path
    for candidate in MONO_FONTS:
        if os.path.exists(candidate):
            return candidate
    sys.exit(
        "render_ansi_png: no monospace font found; install one "
        "(apt-get install fonts-dejavu-core) or pass --font"
    )


def sibling(path, *suffixes):
    """DejaVuSansMono.ttf -> DejaVuSansMono-Bold.ttf (or LiberationMono-Regular.ttf
    -> LiberationMono-Bold.ttf), if it exists; else `path`."""
    stem, ext = os.path.splitext(path)
    stem = stem[: -len("-Regular")] if stem.endswith("-Regular") else stem
    for suffix in suffixes:
        candidate = f"{stem}-{suffix}{ext}"
        if os.path.exists(candidate):
            return candidate
    return path


class Fonts:
    def __init__(self, path, size):
        load = lambda p: ImageFont.truetype(p, size)
        self.regular = load(path)
        self.bold = load(sibling(path, "Bold"))
        self.italic = load(sibling(path, "Oblique", "Italic"))
        self.bold_italic = load(sibling(path, "BoldOblique", "BoldItalic"))
        # Fonts tried, in order, for characters the chosen one lacks.
        self.fallbacks = []
        for candidate in [path, os.path.join(os.path.dirname(path), "DejaVuSans.ttf")] + FALLBACK_FONTS:
            try:
                font = load(candidate)
            except OSError:
                continue
            self.fallbacks.append((font, missing_glyph(font)))
        self.cell_w = self.regular.getlength("M")
        ascent, descent = self.regular.getmetrics()
        self.ascent = ascent
        self.cell_h = round((ascent + descent) * 1.12)
        self.baseline = round((self.cell_h - ascent - descent) / 2) + ascent

    def pick(self, style, ch):
        font = self.regular
        if style.bold and style.italic:
            font = self.bold_italic
        elif style.bold:
            font = self.bold
        elif style.italic:
            font = self.italic
        if has_glyph(font, missing_glyph(font), ch):
            return font
        for candidate, missing in self.fallbacks:
            if has_glyph(candidate, missing, ch):
                return candidate
        return font


def draw_box(draw, arms, x0, y0, w, h, colour, thin):
    """Draws a box drawing character as arms from the cell centre to its
    edges; each arm reaches half a line past the centre so joints close."""
    left, right, up, down = arms
    cx, cy = x0 + w / 2, y0 + h / 2

    def rect(xa, ya, xb, yb):
        draw.rectangle([round(xa), round(ya), round(xb) - 1, round(yb) - 1], fill=colour)

    for weight, horizontal, start, end in [
        (left, True, x0, None), (right, True, None, x0 + w),
        (up, False, y0, None), (down, False, None, y0 + h),
    ]:
        if not weight:
            continue
        t = thin * 2 if weight == 2 else thin
        offsets = [-thin, thin] if weight == 3 else [0]
        centre = cx if horizontal else cy
        a = start if start is not None else centre - t / 2
        b = end if end is not None else centre + t / 2
        for off in offsets:
            if horizontal:
                rect(a, cy - t / 2 + off, b, cy + t / 2 + off)
            else:
                rect(cx - t / 2 + off, a, cx + t / 2 + off, b)


def render(screen, fonts, cursor):
    cols, rows = len(screen[0]), len(screen)
    w = round(cols * fonts.cell_w)
    h = rows * fonts.cell_h
    image = Image.new("RGB", (w, h), DEFAULT_BG)
    draw = ImageDraw.Draw(image)
    thin = max(1, round(fonts.cell_w / 9))
    xs = [round(c * fonts.cell_w) for c in range(cols + 1)]
    # Backgrounds first, so glyphs that overhang a cell are not cut.
    for y, row in enumerate(screen):
        for x, cell in enumerate(row):
            if cell is None:
                continue
            span = 2 if x + 1 < cols and row[x + 1] is None else 1
            fg, bg = cell_colours(cell[1])
            if (x, y) == cursor:
                fg, bg = DEFAULT_BG, CURSOR
            if bg != DEFAULT_BG:
                draw.rectangle([xs[x], y * fonts.cell_h, xs[x + span] - 1, (y + 1) * fonts.cell_h - 1], fill=bg)
    for y, row in enumerate(screen):
        top = y * fonts.cell_h
        for x, cell in enumerate(row):
            if cell is None:
                continue
            ch, style = cell
            span = 2 if x + 1 < cols and row[x + 1] is None else 1
            fg, bg = cell_colours(style)
            if (x, y) == cursor:
                fg = DEFAULT_BG
            left, width = xs[x], xs[x + span] - xs[x]
            if ch in BOX:
                draw_box(draw, BOX[ch], left, top, width, fonts.cell_h, fg, thin)
            elif ch in BLOCKS:
                a, b, c, d = BLOCKS[ch]
                draw.rectangle(
                    [left + round(a * width), top + round(b * fonts.cell_h),
                     left + round(c * width) - 1, top + round(d * fonts.cell_h) - 1],
                    fill=fg,
                )
            elif ch != " ":
                font = fonts.pick(style, ch)
                advance = font.getlength(ch)
                gx = left + max(0, (width - advance) / 2) if advance < width else left
                draw.text((gx, top + fonts.baseline), ch, font=font, fill=fg, anchor="ls")
            if style.underline:
                uy = top + fonts.baseline + max(1, thin)
                draw.rectangle([left, uy, left + width - 1, uy + thin - 1], fill=fg)
            if style.strike:
                sy = top + fonts.baseline - round(fonts.ascent * 0.3)
                draw.rectangle([left, sy, left + width - 1, sy + thin - 1], fill=fg)
    return image


def frame(screen_image, fonts, title):
    """Puts the screen in a window: title bar, padding, rounded corners and
    a soft shadow on a transparent background."""
    pad = round(fonts.cell_w)
    bar = round(fonts.cell_h * 1.6)
    radius = round(fonts.cell_h * 0.5)
    margin = round(fonts.cell_h * 1.2)
    win_w = screen_image.width + 2 * pad
    win_h = bar + screen_image.height + 2 * pad
    window = Image.new("RGB", (win_w, win_h), DEFAULT_BG)
    d = ImageDraw.Draw(window)
    d.rectangle([0, 0, win_w, bar - 1], fill=TITLE_BAR)
    dot = round(bar * 0.26)
    for i, colour in enumerate([(0xFF, 0x5F, 0x57), (0xFE, 0xBC, 0x2E), (0x28, 0xC8, 0x40)]):
        cx = round(bar * 0.55) + i * round(dot * 3.4)
        d.ellipse([cx - dot, bar // 2 - dot, cx + dot, bar // 2 + dot], fill=colour)
    if title:
        d.text((win_w / 2, bar / 2), title, font=fonts.regular, fill=TITLE_FG, anchor="mm")
    window.paste(screen_image, (pad, bar + pad))
    mask = Image.new("L", window.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, win_w - 1, win_h - 1], radius=radius, fill=255)
    canvas = Image.new("RGBA", (win_w + 2 * margin, win_h + 2 * margin), (0, 0, 0, 0))
    shadow = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    offset = round(margin * 0.3)
    ImageDraw.Draw(shadow).rounded_rectangle(
        [margin, margin + offset, margin + win_w - 1, margin + win_h - 1 + offset],
        radius=radius,
        fill=(0, 0, 0, 150),
    )
    canvas = Image.alpha_composite(canvas, shadow.filter(ImageFilter.GaussianBlur(margin / 3)))
    canvas.paste(window, (margin, margin), mask)
    return canvas


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="the captured screen, with escape sequences ('-': stdin)")
    parser.add_argument("output", help="the PNG to write")
    parser.add_argument("--cols", type=int, default=80)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--cursor", help="X,Y of a block cursor to draw (0-based)")
    parser.add_argument("--title", default="", help="window title")
    parser.add_argument("--font", help="monospace TrueType font (default: DejaVu Sans Mono)")
    parser.add_argument("--size", type=int, default=28, help="font size in pixels (default 28: 14 at 2x)")
    parser.add_argument("--no-frame", action="store_true", help="only the screen, no window around it")
    args = parser.parse_args()

    if args.input == "-":
        text = sys.stdin.buffer.read().decode("utf-8", "replace")
    else:
        with open(args.input, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    cursor = tuple(int(v) for v in args.cursor.split(",")) if args.cursor else None
    fonts = Fonts(find_font(args.font), args.size)
    image = render(parse(text, args.cols, args.rows), fonts, cursor)
    if not args.no_frame:
        image = frame(image, fonts, args.title)
    tmp = args.output + ".tmp"
    image.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
