"""One look for every figure: theme, size presets and a fixed (colour, marker) per estimator.

Styles. Every estimator is drawn with a pair (colour, marker) that depends on its name
only, never on its position in ``estimators.ESTIMATORS``, so it is the same in every
figure, run and commit however the registry grows or is reordered. Colours: the
Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design") without its yellow (too
light on white), distinguishable under the common colour-vision deficiencies, then three
dark colours of Paul Tol's "muted" scheme (Tol 2021, "Colour Schemes", SRON/EPS/TN/09-002).
Ten colours crossed with eight filled markers give 80 pairs; the marker keeps two
estimators that share a colour apart, also in greyscale.

* The estimators of the suite, present and announced, have a pinned pair in ``PINNED``
  (chosen so that members of one family differ in colour).
* Any other estimator, registered later or from a plugin, gets a free pair (one no pinned
  name uses) picked from a hash of its name, probing to the next free pair on a collision:
  first the registered ones in name order, then the others (plugins, names from result
  files) in name order, so every estimator of a figure has its own pair and a plugin never
  moves a registered estimator's pair.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from plotnine import element_blank, element_line, element_rect, element_text, theme, theme_bw

from estimators import ESTIMATORS

#: Okabe-Ito without yellow, then Tol's muted indigo, wine and olive
PALETTE: tuple[str, ...] = (
    "#0072B2",  # 0 blue
    "#E69F00",  # 1 orange
    "#009E73",  # 2 bluish green
    "#D55E00",  # 3 vermillion
    "#CC79A7",  # 4 reddish purple
    "#56B4E9",  # 5 sky blue
    "#000000",  # 6 black
    "#332288",  # 7 indigo
    "#882255",  # 8 wine
    "#999933",  # 9 olive
)
#: filled marker shapes (matplotlib codes), each of which reads clearly when drawn hollow
#: (white fill), which the figures use for biased estimators and unresolved points
SHAPES: tuple[str, ...] = ("o", "s", "^", "D", "v", "<", ">", "*")

#: (colour index, marker index) of the suite's estimators; the first seven keep the pairs
#: they had when the styles followed the registry order
PINNED: dict[str, tuple[int, int]] = {
    "reinforce": (0, 0),
    "reinforce_ema": (1, 1),
    "reinforce_loo": (2, 2),
    "reparam": (3, 3),
    "gumbel_softmax": (4, 4),
    "st_gumbel_softmax": (5, 5),
    "straight_through": (6, 6),
    # binary antithetic and control-variate estimators (issue 11)
    "arm": (7, 0),
    "disarm": (8, 1),
    "arms": (9, 2),
    "muprop": (0, 3),
    "rebar": (1, 4),
    "relax": (2, 5),
    "reinforce_exact_baseline": (6, 7),
    # categorical and straight-through estimators (issue 12)
    "gumbel_rao": (3, 6),
    "reinmax": (7, 7),
    "gst": (8, 0),
    "zgr": (9, 1),
    "indecater": (0, 6),
    "unordered_set": (1, 2),
    "arsm": (2, 7),
    # learned, multi-sample and continuous estimators (issue 13)
    "nvil": (9, 0),  # olive: (3, 0) shared reparam's and gumbel_rao's colour in bench paper
    "vimco": (4, 1),
    "mvd": (5, 2),
    "delta_cv": (6, 3),
    "stl": (7, 4),
    "dreg": (8, 5),
    # group baselines (issue 23)
    "grpo": (4, 6),
    "dr_grpo": (3, 1),
    "reinforce_optimal_baseline": (5, 7),
    # the discrete and continuous registry of 2020-2026 (issues 24, 25)
    "double_cv": (0, 1),
    "carms": (3, 0),
    "stochastic_triples": (6, 0),
    "local_disarm": (9, 3),
    "lax": (2, 0),
    "rqmc_reparam": (5, 0),
    "implicit_reparam": (8, 2),
    "generalized_reparam": (1, 0),
    "rsvi": (4, 0),
    "sst": (7, 1),
    "st_sst": (0, 2),
    "igr": (3, 2),
    "decoupled_st": (1, 3),
}
#: resolution of raster output
DPI = 300
#: text sizes in points at the preset's width, i.e. after placement at 100%
TITLE_PT, TEXT_PT = 9.0, 8.0


@dataclass(frozen=True)
class Style:
    """How one estimator is drawn."""

    colour: str
    shape: str


def _free_pairs() -> list[tuple[int, int]]:
    taken = set(PINNED.values())
    return [p for p in itertools.product(range(len(PALETTE)), range(len(SHAPES)))
            if p not in taken]


def estimator_styles(names: Iterable[str] | None = None) -> dict[str, Style]:
    """The style of every registered estimator and of ``names`` (see module docstring).

    Raises:
        ValueError: more estimators than pairs (80), which no figure can tell apart.
    """
    free = _free_pairs()
    used: set[tuple[int, int]] = set()
    pairs = {name: PINNED[name] for name in ESTIMATORS if name in PINNED}
    extra = sorted(set(names or ()) - set(ESTIMATORS))
    pairs |= {name: PINNED[name] for name in extra if name in PINNED}
    rest = sorted(n for n in ESTIMATORS if n not in PINNED) + [n for n in extra
                                                               if n not in PINNED]
    if len(rest) > len(free):
        raise ValueError(f"{len(pairs) + len(rest)} estimators but only "
                         f"{len(PALETTE) * len(SHAPES)} (colour, marker) pairs")
    for name in rest:
        start = zlib.crc32(name.encode()) % len(free)
        pair = next(free[(start + i) % len(free)] for i in range(len(free))
                    if free[(start + i) % len(free)] not in used)
        used.add(pair)
        pairs[name] = pair
    return {name: Style(PALETTE[c], SHAPES[m]) for name, (c, m) in pairs.items()}


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
