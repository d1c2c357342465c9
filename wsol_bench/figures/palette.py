"""The one palette of every figure: Okabe & Ito's colour-blind-safe colours, a line style per kind of box.

Boxes are told apart by line style as well as colour, so no figure relies on hue alone:

* ground truth: bluish green, dashed;
* a correct guess: blue, solid; a wrong guess: vermillion, dash-dot;
* a guess that is not scored (no ground truth; the box of the paper's Figure 3): orange, dotted.

GraphCut seeds are vermillion (object) and sky blue (background); lines of a plot take
:data:`SERIES_COLOURS` in turn; maps shown in colour use the perceptually uniform
:data:`SALIENCY_CMAP`. Reference: M. Okabe, K. Ito, *Color Universal Design* (2008).
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.colors import to_rgb

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}


@dataclass(frozen=True)
class LineStyle:
    """How one kind of box is drawn: a colour of :data:`OKABE_ITO` (and its name, for captions) and a line style."""

    colour: str
    colour_name: str
    linestyle: str


def _style(name: str, linestyle: str) -> LineStyle:
    return LineStyle(OKABE_ITO[name], name, linestyle)


BOX_STYLES = {
    "ground truth": _style("bluish green", "--"),
    "correct guess": _style("blue", "-"),
    "wrong guess": _style("vermillion", "-."),
    "guess (not scored)": _style("orange", ":"),
}
SEED_COLOURS = {"foreground": "vermillion", "background": "sky blue"}  # names in OKABE_ITO
SERIES_COLOURS = tuple(OKABE_ITO[n] for n in ("blue", "vermillion", "bluish green", "orange", "reddish purple",
                                              "sky blue", "black"))  # yellow is too pale on white
SALIENCY_CMAP = "inferno"  # perceptually uniform, black (0) to pale yellow


def rgb255(colour: str) -> tuple[int, int, int]:
    """``colour`` (any matplotlib colour) as 0..255 integers."""
    r, g, b = to_rgb(colour)
    return round(r * 255), round(g * 255), round(b * 255)


def text_colour_on(colour: str) -> str:
    """``'black'`` or ``'white'``, whichever reads better on a ``colour`` background (relative luminance)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.179 else "white"


__all__ = ["BOX_STYLES", "OKABE_ITO", "SALIENCY_CMAP", "SEED_COLOURS", "SERIES_COLOURS", "LineStyle", "rgb255",
           "text_colour_on"]
