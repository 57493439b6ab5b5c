"""One look for every figure: theme, size presets and a fixed (colour, marker) per estimator.

Styles. Every estimator is drawn with a pair (colour, marker) that is the same in every
figure, run and commit however the registry grows or is reordered. Colours: the
Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design") without its yellow (too
light on white), distinguishable under the common colour-vision deficiencies, then three
dark colours of Paul Tol's "muted" scheme (Tol 2021, "Colour Schemes", SRON/EPS/TN/09-002).
The marker keeps two estimators that share a colour apart, also in greyscale.

* Each estimator class of the suite declares its pair itself (``Estimator.style``: a colour
  name of ``COLOURS`` and a marker of ``SHAPES``), chosen so that members of one family
  differ in colour; tests/test_figures.py checks that no two share a pair. A built-in that
  declares none gets a free pair of the same set, by a hash of its name.
* Any other estimator (a plugin, also one that subclasses a built-in, or a name from a
  result file) gets a colour of ``PLUGIN_COLOURS`` and a marker of ``PLUGIN_SHAPES``, which
  no built-in uses, so it never looks like a built-in; the pair comes from a hash of its
  name, probing to the next free pair, in name order, so the plugins of a figure differ
  from each other.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from plotnine import element_blank, element_line, element_rect, element_text, theme, theme_bw

from bench.registry import current_registry
from estimators.base import Estimator

#: Okabe-Ito without yellow, then Tol's muted indigo, wine and olive
COLOURS: dict[str, str] = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",  # bluish green
    "vermillion": "#D55E00",
    "purple": "#CC79A7",  # reddish purple
    "sky": "#56B4E9",  # sky blue
    "black": "#000000",
    "indigo": "#332288",
    "wine": "#882255",
    "olive": "#999933",
}
PALETTE: tuple[str, ...] = tuple(COLOURS.values())
#: filled marker shapes (matplotlib codes) of the suite's estimators, each of which reads
#: clearly when drawn hollow (white fill), which the figures use for biased estimators
SHAPES: tuple[str, ...] = ("o", "s", "^", "D", "v", "<", ">", "*")
#: the colours and markers of plugin estimators: none of them is a built-in's (Tol's rose,
#: sand and teal, matplotlib's brown, and two greys)
PLUGIN_COLOURS: tuple[str, ...] = ("#CC6677", "#8C564B", "#DDCC77", "#44AA99", "#777777",
                                   "#BBBBBB")
#: (markers first that read clearly hollow, as biased estimators are drawn)
PLUGIN_SHAPES: tuple[str, ...] = ("p", "h", "8", "d", "P", "X")
#: resolution of raster output
DPI = 300
#: text sizes in points at the preset's width, i.e. after placement at 100%
TITLE_PT, TEXT_PT = 9.0, 8.0


@dataclass(frozen=True)
class Style:
    """How one estimator is drawn."""

    colour: str
    shape: str


def is_builtin(cls: type[Estimator]) -> bool:
    """Whether ``cls`` is one of the suite's estimators (defined in the ``estimators``
    package; a plugin's class, even a subclass of a built-in, is not)."""
    return cls.__module__.split(".")[0] == "estimators"


def declared_style(name: str, cls: type[Estimator]) -> Style | None:
    """The style ``cls`` declares itself (not one it inherits, which would be another
    estimator's), checked; None without one.

    Raises:
        ValueError: an unknown colour name or marker.
    """
    pair = cls.__dict__.get("style")
    if pair is None:
        return None
    colour, shape = pair
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f"estimator {name!r}: style {pair!r}: expected a colour of "
                         f"{', '.join(COLOURS)} and a marker of {' '.join(SHAPES)}")
    return Style(COLOURS[colour], shape)


def _probe(names: list[str], pairs: list[Style], used: set[Style]) -> dict[str, Style]:
    """A free pair of ``pairs`` for each name: from a hash of the name, probing onwards."""
    styles = {}
    for name in names:
        start = zlib.crc32(name.encode()) % len(pairs)
        pair = next((pairs[(start + i) % len(pairs)] for i in range(len(pairs))
                     if pairs[(start + i) % len(pairs)] not in used), None)
        if pair is None:
            raise ValueError(f"more estimators than the {len(pairs)} (colour, marker) pairs "
                             "of their set; no figure can tell them apart")
        used.add(pair)
        styles[name] = pair
    return styles


def estimator_styles(names: Iterable[str] | None = None) -> dict[str, Style]:
    """The style of every registered estimator and of ``names`` (see module docstring).

    Raises:
        ValueError: an invalid declaration, or more estimators than pairs.
    """
    registered = current_registry().estimators
    builtins = {n: c for n, c in registered.items() if is_builtin(c)}
    styles = {n: s for n, c in builtins.items() if (s := declared_style(n, c)) is not None}
    used = set(styles.values())
    suite = [Style(c, m) for c, m in itertools.product(PALETTE, SHAPES)]
    styles |= _probe(sorted(set(builtins) - set(styles)), suite, used)
    others = sorted((set(registered) | set(names or ())) - set(builtins))
    plugin = [Style(c, m) for m, c in itertools.product(PLUGIN_SHAPES, PLUGIN_COLOURS)]
    return styles | _probe(others, plugin, set())


def estimator_colours(names: Iterable[str] | None = None) -> dict[str, str]:
    """The fixed colour of every registered estimator and of ``names``."""
    return {name: s.colour for name, s in estimator_styles(names).items()}


def estimator_shapes(names: Iterable[str] | None = None) -> dict[str, str]:
    """The fixed marker of every registered estimator and of ``names``."""
    return {name: s.shape for name, s in estimator_styles(names).items()}


@dataclass(frozen=True)
class Size:
    """A figure size preset: a text width of a paper template and the height of a panel row.

    Attributes:
        width_in: figure width in inches: the figure is placed at 100%, so its text keeps
            the theme's sizes (``TITLE_PT``, ``TEXT_PT``).
        row_in: height of one row of panels in inches.
        extra_in: height of the legend, axis titles and margins in inches.
        max_cols: most panels side by side.
        legend_cols: columns of the legend below the panels.
        description: where the width comes from.
    """

    width_in: float
    row_in: float
    extra_in: float
    max_cols: int
    legend_cols: int
    description: str = ""

    def height_in(self, rows: int) -> float:
        return round(self.row_in * rows + self.extra_in, 2)


_COLUMN = Size(3.25, 2.0, 1.6, 2, 2, "one column of a two-column paper (ICML: 3.25 in)")
_PAGE = Size(6.75, 2.0, 1.1, 4, 4, "full text width of a two-column paper (ICML: 6.75 in)")
#: text widths of the paper templates (ICML 2025 and NeurIPS 2025 style files)
SIZES: dict[str, Size] = {
    "icml-column": _COLUMN,
    "icml-page": _PAGE,
    "neurips": Size(5.5, 2.0, 1.2, 3, 3,
                    "text width of a single-column paper (NeurIPS, ICLR: 5.5 in)"),
    "single": _COLUMN,
    "double": _PAGE,
}


def get_size(name: str) -> Size:
    try:
        return SIZES[name]
    except KeyError:
        raise ValueError(f"unknown size {name!r}; valid sizes: {', '.join(SIZES)}") from None


def paper_theme() -> theme:
    """The shared theme; the figure size is set per figure (``Size.height_in``)."""
    return theme_bw(base_size=TITLE_PT) + theme(
        dpi=DPI,
        legend_position="bottom",
        legend_title=element_blank(),
        legend_key=element_blank(),
        # 10 + 1.5 pt a legend line (the default is 15 pt): a legend of 40 estimators
        # takes 10 lines, and ``figures.common.LEGEND_LINE_IN`` sizes the figure for them
        legend_key_size=10,
        legend_key_spacing_y=1.5,
        legend_text=element_text(size=TEXT_PT),
        legend_box_margin=0,
        strip_background=element_rect(fill="#EEEEEE", color="#BBBBBB"),
        strip_text=element_text(size=TEXT_PT),
        panel_grid_minor=element_blank(),
        panel_grid_major=element_line(color="#E5E5E5", size=0.4),
        axis_title=element_text(size=TITLE_PT),
        axis_text=element_text(size=TEXT_PT),
        plot_title=element_text(size=TITLE_PT, weight="bold", ha="left"),
        plot_caption=element_text(size=TEXT_PT, color="#555555"),
    )
