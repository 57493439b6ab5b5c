"""One look for every figure: theme, size presets and a fixed colour per estimator.

Colours come from the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"),
distinguishable under the common colour-vision deficiencies, continued with Paul Tol's
"muted" scheme (Tol 2021, "Colour Schemes", SRON/EPS/TN/09-002) once those are used up.
An estimator's colour is the palette entry at its position in ``estimators.ESTIMATORS``;
registry keys are permanent and new estimators are appended, so an estimator keeps its
colour in every figure, run and commit. Each estimator also gets a fixed marker shape, so
figures stay readable in greyscale.
"""

from __future__ import annotations

from dataclasses import dataclass

from plotnine import element_blank, element_line, element_rect, element_text, theme, theme_bw

from estimators import ESTIMATORS

#: Okabe-Ito without yellow (too light on white), then Tol's muted scheme
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#332288",  # indigo
    "#117733",  # green
    "#882255",  # wine
    "#999933",  # olive
    "#44AA99",  # teal
    "#AA4499",  # purple
    "#DDCC77",  # sand
)
#: marker shapes (matplotlib codes), in the same rotation as the colours
SHAPES: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
#: colour of a name that is not in the registry (e.g. from a result file of a newer commit)
UNKNOWN_COLOUR = "#888888"
UNKNOWN_SHAPE = "."
#: resolution of raster output
DPI = 300
BASE_SIZE = 8


@dataclass(frozen=True)
class Size:
    """A figure size preset: the width of a column layout and the height of one panel row.

    Attributes:
        width_in: figure width in inches.
        row_in: height of one row of panels in inches.
        extra_in: height of the legend, axis titles and margins in inches.
        max_cols: most panels side by side.
        legend_cols: columns of the legend below the panels.
    """

    width_in: float
    row_in: float
    extra_in: float
    max_cols: int
    legend_cols: int

    def height_in(self, rows: int) -> float:
        return round(self.row_in * rows + self.extra_in, 2)


#: single column and full page width of a two-column paper (e.g. ICML, NeurIPS, IEEE)
SIZES: dict[str, Size] = {
    "single": Size(width_in=3.4, row_in=1.9, extra_in=1.3, max_cols=2, legend_cols=2),
    "double": Size(width_in=7.0, row_in=2.2, extra_in=0.8, max_cols=4, legend_cols=4),
}


def get_size(name: str) -> Size:
    try:
        return SIZES[name]
    except KeyError:
        raise ValueError(f"unknown size {name!r}; valid sizes: {', '.join(SIZES)}") from None


def estimator_colours(names: list[str] | None = None) -> dict[str, str]:
    """The fixed colour of every registered estimator (and of ``names`` not registered)."""
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(ESTIMATORS)}
    for name in names or []:
        colours.setdefault(name, UNKNOWN_COLOUR)
    return colours


def estimator_shapes(names: list[str] | None = None) -> dict[str, str]:
    """The fixed marker of every registered estimator (and of ``names`` not registered)."""
    shapes = {name: SHAPES[i % len(SHAPES)] for i, name in enumerate(ESTIMATORS)}
    for name in names or []:
        shapes.setdefault(name, UNKNOWN_SHAPE)
    return shapes


def paper_theme() -> theme:
    """The shared theme; the figure size is set per figure (``Size.height_in``)."""
    return theme_bw(base_size=BASE_SIZE) + theme(
        dpi=DPI,
        legend_position="bottom",
        legend_title=element_blank(),
        legend_key=element_blank(),
        legend_text=element_text(size=BASE_SIZE - 1),
        legend_box_margin=0,
        strip_background=element_rect(fill="#EEEEEE", color="#BBBBBB"),
        strip_text=element_text(size=BASE_SIZE - 1),
        panel_grid_minor=element_blank(),
        panel_grid_major=element_line(color="#E5E5E5", size=0.4),
        axis_title=element_text(size=BASE_SIZE),
        axis_text=element_text(size=BASE_SIZE - 1.5),
        plot_caption=element_text(size=BASE_SIZE - 1.5, color="#555555"),
    )
