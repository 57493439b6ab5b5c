"""Axes shared by the figures: log breaks and labels that never collide, ticks at every
measured K, series spread around a shared x, and the floor of rounding-level values.

Floor. A variance or mean squared error at the level of floating-point rounding (an exact
estimator: 2e-20 in float32, or an MSE of 1e-17) measures rounding only; on a log axis it
would stretch the axis over 13-17 decades and squeeze every real value into the top. Such a
value is drawn on a floor below the panel's smallest real value, marked by a dotted line and
ticked "0" (the ordinary ticks between the floor and the smallest real value are dropped, so
that no tick suggests a value for what is drawn there), and the caption names the
estimators drawn there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from plotnine import aes, geom_hline, scale_x_log10, scale_y_log10

from bench.cell.metrics import FP_ULPS

#: the floor sits this factor below the smallest real value (or interval end) of a panel
FLOOR_FACTOR = 3.0
FLOOR_NOTE = "on the dotted floor: 0 up to floating-point rounding"
#: plotnine's default expansion of a continuous axis: this fraction of the range each side
EXPAND = 0.05


def log_labels(values: Sequence[float]) -> list[str]:
    """Short tick labels for log axes, exact to the digits a break has: 0.3, 30,
    3e-05 -> "3e-5", 6.5e-04 -> "6.5e-4" (so that neighbouring breaks never share a label)."""
    labels = []
    for v in (float(x) for x in values):
        if 1e-3 <= abs(v) < 1e4 or v == 0 or not np.isfinite(v):
            labels.append(f"{v:g}")
            continue
        digits = next((d for d in range(15) if abs(float(f"{v:.{d}e}") - v) <= 1e-9 * abs(v)),
                      15)
        mantissa, exponent = f"{v:.{digits}e}".split("e")
        labels.append(f"{mantissa}e{int(exponent)}")
    return labels


def log_breaks(limits: Sequence[float], most: int = 5) -> list[float]:
    """Log-axis breaks inside ``limits``: powers of ten or 1-3 per decade if either gives
    three breaks, else the first of 1, 1-3, 1-2-5 and every half digit that gives two (else
    one); at most about ``most`` (thinned evenly)."""
    low, high = (float(v) for v in limits)
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 or high <= low:
        return []
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    candidates = []
    for mantissas in ((1,), (1, 3), (1, 2, 5), tuple(m / 2 for m in range(2, 20))):
        found = [float(f"{m}e{e}") for e in decades for m in mantissas
                 if low <= float(f"{m}e{e}") <= high]
        candidates.append(found[:: int(np.ceil(len(found) / most))] if found else found)
    for found in candidates[:2]:
        if len(found) >= min(3, most):
            return found
    for enough in (2, 1):
        for found in candidates:
            if len(found) >= enough:
                return found
    return []


def log10(x: bool = False, y: bool = False, x_most: int = 3,
          y_floors: Sequence[float] = ()) -> list:
    """Log10 scales of x and/or y with the figures' breaks and short labels; x gets at most
    about ``x_most`` breaks, so that labels of narrow panels do not run into each other; y
    ticks the panels' floors (``floor_values``) ``y_floors`` as 0 (``floored_breaks``)."""
    scales = []
    if x:
        scales.append(scale_x_log10(breaks=lambda lim: log_breaks(lim, x_most),
                                    labels=log_labels, minor_breaks=[]))
    if y:
        floors = [float(f) for f in y_floors]
        scales.append(scale_y_log10(breaks=lambda lim: floored_breaks(lim, floors),
                                    labels=lambda v: floored_labels(v, floors),
                                    minor_breaks=[]))
    return scales


def panel_floor(limits: Sequence[float], floors: Sequence[float]) -> float | None:
    """The floor of the panel whose axis ``limits`` these are, if it has one: a panel's floor
    is its smallest value, so it sits ``EXPAND`` of the panel's range (in log10) above the
    lower limit plotnine passes."""
    low, high = (float(v) for v in limits)
    if not floors or not (0 < low < high < np.inf):
        return None
    low_t, high_t = np.log10(low), np.log10(high)
    smallest = low_t + EXPAND * (high_t - low_t) / (1 + 2 * EXPAND)
    return next((f for f in floors if abs(np.log10(f) - smallest) < 1e-6), None)


def floored_breaks(limits: Sequence[float], floors: Sequence[float], most: int = 5
                   ) -> list[float]:
    """``log_breaks``, and in a panel with a floor the floor itself in place of the breaks
    below the panel's smallest real value (``FLOOR_FACTOR`` above the floor)."""
    breaks = log_breaks(limits, most)
    floor = panel_floor(limits, floors)
    if floor is None:
        return breaks
    return [floor] + [b for b in breaks if b >= floor * FLOOR_FACTOR * (1 - 1e-9)]


def floored_labels(values: Sequence[float], floors: Sequence[float]) -> list[str]:
    """``log_labels``, with "0" at a floor."""
    return ["0" if any(np.isclose(float(v), f, rtol=1e-9, atol=0) for f in floors) else label
            for v, label in zip(values, log_labels(values), strict=True)]


def k_breaks(values: Sequence[float]) -> Callable[[Sequence[float]], list[float]]:
    """Breaks at every measured K inside a panel's limits (K = 1, 2, 4, ... all ticked)."""
    ks = sorted({float(v) for v in values})

    def breaks(limits: Sequence[float]) -> list[float]:
        low, high = (float(v) for v in limits)
        inside = [k for k in ks if low * 0.999 <= k <= high * 1.001]
        return inside[:: int(np.ceil(len(inside) / 8))] if inside else inside

    return breaks


def dodge(table: pd.DataFrame, x: str, spread: float = 0.4) -> pd.DataFrame:
    """Add ``x_dodged``: ``x`` times a factor per variant of a panel, so that series that
    coincide stay visible on a log axis; the factors span at most ``1 + spread``."""
    out = []
    for _, rows in table.groupby("panel", observed=True, sort=False):
        variants = list(dict.fromkeys(rows.sort_values("estimator")["variant"]))
        m = len(variants)
        step = min(0.07, np.log1p(spread) / max(m - 1, 1))
        offset = {v: step * (j - (m - 1) / 2) for j, v in enumerate(variants)}
        out.append(rows.assign(x_dodged=rows[x] * np.exp(rows["variant"].map(offset))))
    return pd.concat(out) if out else table.assign(x_dodged=table[x])


def _eps(table: pd.DataFrame) -> pd.Series:
    return table.get("dtype", pd.Series("float32", index=table.index)).map(
        {"float64": np.finfo(np.float64).eps}).fillna(np.finfo(np.float32).eps)


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(table.get(name, pd.Series(np.nan, index=table.index)),
                         errors="coerce")


def rounding_level(table: pd.DataFrame, column: str) -> pd.Series:
    """Whether each row's ``column`` (a squared quantity: ``variance_trace`` or ``mse``) is 0
    up to floating-point rounding: at most (``FP_ULPS`` eps ||grad L||)^2 (eps of the cell's
    dtype), or, for a variance, an SNR of at least 1 / (``FP_ULPS`` eps) (the variance is
    then at most (``FP_ULPS`` eps ||mean||)^2)."""
    values = _column(table, column)
    eps = _eps(table)
    scale = _column(table, "truth_l2")
    rounding = (values == 0) | (values <= (FP_ULPS * eps * scale) ** 2)
    if column == "variance_trace":
        rounding |= _column(table, "snr") >= 1 / (FP_ULPS * eps)
    return rounding.fillna(False).astype(bool)


def floor_values(table: pd.DataFrame, column: str,
                 lows: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``at_floor`` (rounding-level ``column``) and ``shown`` (``column``, or the panel's
    floor for rows at the floor: ``FLOOR_FACTOR`` below the smallest real value or
    interval end of ``lows`` in the panel); returns the table and one row per panel with a
    floor (``panel``, ``floor``) for ``floor_line``."""
    at_floor = rounding_level(table, column)
    real = table[~at_floor]
    values = pd.concat([pd.DataFrame({"panel": real["panel"].to_numpy(), "value": pd.to_numeric(
        real[c], errors="coerce").to_numpy(dtype=float)}) for c in (column, *lows)],
        ignore_index=True)
    values = values[values["value"] > 0]
    smallest = values.groupby("panel", observed=True)["value"].min()
    floors = (smallest / FLOOR_FACTOR).reindex(table["panel"].cat.categories)
    fallback = float(np.nanmin(floors)) if floors.notna().any() else 1e-12
    floors = floors.fillna(fallback)
    shown = np.where(at_floor, table["panel"].map(floors).astype(float), table[column])
    table = table.assign(at_floor=at_floor.to_numpy(), shown=shown)
    panels = sorted(set(table.loc[table["at_floor"], "panel"]), key=list(floors.index).index)
    lines = pd.DataFrame({"panel": pd.Categorical(panels, categories=floors.index),
                          "floor": [floors[p] for p in panels]})
    return table, lines


def floor_line(lines: pd.DataFrame) -> list:
    """The dotted floor line of each panel that has one (``floor_values``); under
    ``coord_flip`` it is vertical."""
    if lines.empty:
        return []
    return [geom_hline(aes(yintercept="floor"), data=lines, linetype="dotted",
                       color="#777777", size=0.5)]


def floor_caption(table: pd.DataFrame) -> str:
    """The caption line naming the variants drawn on the floor ('' without any)."""
    names = list(dict.fromkeys(table.loc[table["at_floor"], "variant"].astype(str)))
    return f"\n{FLOOR_NOTE} ({', '.join(names)})" if names else ""
