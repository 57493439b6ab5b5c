"""A run's cells for analysis and for papers: ``load`` and the summary tables of ``bench table``.

``load(run_dir)`` reads ``cells.parquet`` and gives every option its own column next to the
JSON it comes from: ``tau``, ``decay``, ``theta``, ... (``option_columns``), so that rows
that differ only in an option are told apart and can be filtered and grouped with pandas.

``paper_table(cells, fmt)`` writes, per problem, each estimator's bias ``||E g - grad L||``
(``bias`` = sqrt(max(bias_sq, 0)), the root of the unbiased squared bias), the trace of its
covariance and its mean squared error, each with its 95% interval for the same quantity
(docs/intervals.md: the roots of the squared bias's score interval, and kurtosis-adjusted
scaled chi-square intervals), and the p-value of the test "unbiased", as LaTeX (booktabs)
or Markdown. A number and its interval share one power of ten and are rounded to ``digits``
significant digits of the number, so the interval shows exactly the digits the number has.
The table ends with ``NOTE``: the mse is unbiased, and mse - variance is the unbiased
squared bias, so an unbiased estimator's mse is below its variance about half the time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

#: the formats of ``paper_table``
FORMATS = ("latex", "markdown")
#: numbers outside [1e-3, 1e4) are written with a power of ten
PLAIN_RANGE = (1e-3, 1e4)
#: the measured columns of ``paper_table``: (column, heading, whether it has an interval)
MEASURES = (
    ("bias", "bias", True),
    ("variance_trace", "variance", True),
    ("mse", "MSE", True),
    ("bias_p_value", "p(unbiased)", False),
)
#: the intervals, in the table's header
INTERVALS = "95% intervals (docs/intervals.md)"
#: why an mse can be below its variance
NOTE = (
    "mse = mean ||g - truth||^2 is unbiased, and mse - variance = bias_sq, the unbiased "
    "squared bias: for an unbiased estimator it is below 0 (mse below variance) about half "
    "the time; bias = sqrt(max(bias_sq, 0))."
)


def option_columns(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with each problem and estimator option as its own column.

    Each option's column is inserted after the JSON column it comes from
    (``problem_options`` or ``estimator_options``) and named after the option; a name that
    is already a column (e.g. a problem's ``seed``) or that both a problem and an
    estimator use gets the prefix ``problem_`` or ``estimator_``. A cell whose problem or
    estimator lacks the option has None there.
    """
    table = cells.copy()
    parsed = {
        kind: [json.loads(text) if isinstance(text, str) else {} for text in table[kind]]
        for kind in ("problem_options", "estimator_options")
    }
    names = {
        kind: list(dict.fromkeys(n for values in rows for n in values))
        for kind, rows in parsed.items()
    }
    both = set(names["problem_options"]) & set(names["estimator_options"])
    for kind in ("problem_options", "estimator_options"):
        at = list(table.columns).index(kind) + 1
        prefix = kind.removesuffix("_options") + "_"
        for name in names[kind]:
            column = prefix + name if name in both or name in cells.columns else name
            values = pd.Series(
                [values.get(name) for values in parsed[kind]], index=table.index, dtype=object
            )
            table.insert(at, column, values.infer_objects())
            at += 1
    return table


def load(run_dir: str | Path) -> pd.DataFrame:
    """The cells of a run directory (``cells.parquet``) with every option as its own column
    (``option_columns``).

    Raises:
        ValueError: the directory has no ``cells.parquet`` (not a run directory, or a run
            that was interrupted before it consolidated its cells), or one that cannot be
            read (damaged), in one line naming the file and what to do.
    """
    root = Path(run_dir)
    path = root / "cells.parquet"
    if not path.is_file():
        hint = (
            "an interrupted bench run? re-run the same command to finish it"
            if (root / "cells").is_dir()
            else "is it a run directory?"
        )
        raise ValueError(f"{root}: no cells.parquet ({hint})")
    try:
        table = pd.read_parquet(path)
    except (OSError, pa.ArrowException) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        remedy = ("re-run the bench run command that wrote it: it rebuilds cells.parquet from "
                  f"{root / 'cells'}/" if (root / "cells").is_dir() else "restore it from a copy")
        raise ValueError(f"{path}: cannot be read as a Parquet table, it is damaged ({first}); "
                         f"{remedy}") from None
    return option_columns(table)


def number(value: float, digits: int, exponent: int | None = None) -> tuple[str, int | None]:
    """``value`` rounded to ``digits`` significant digits, as (mantissa text, power of ten).

    With ``exponent`` given, the value is written in units of 10**exponent (an interval's
    endpoints in the number's units); else the power is chosen from the value: None inside
    ``PLAIN_RANGE``."""
    if not math.isfinite(value):
        return ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")), exponent
    if exponent is None and value != 0 and not PLAIN_RANGE[0] <= abs(value) < PLAIN_RANGE[1]:
        exponent = math.floor(math.log10(abs(value)))
        if round(abs(value) / 10**exponent, digits - 1) >= 10:
            exponent += 1
    scaled = value / 10**exponent if exponent is not None else value
    return f"{scaled:.{decimals(scaled, digits)}f}", exponent


def decimals(value: float, digits: int) -> int:
    """Decimals that show ``digits`` significant digits of ``value`` once rounded to them
    (at least 0): 9.996 to 3 digits is 10.0, one decimal."""
    if value == 0 or not math.isfinite(value):
        return max(digits - 1, 0)
    rounded = float(f"{value:.{digits - 1}e}")
    return max(digits - 1 - math.floor(math.log10(abs(rounded))), 0)


def measure(value: float, low: float | None, high: float | None, digits: int, fmt: str) -> str:
    """A number and its interval, e.g. ``1.23 [1.10, 1.37]`` or ``1.2 [1.1, 1.4] x 10^-4``:
    the interval in the number's power of ten and with its decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–" if fmt == "markdown" else "--"
    text, exponent = number(float(value), digits)
    places = len(text.split(".")[1]) if "." in text else 0
    interval = ""
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        scale = 10**exponent if exponent is not None else 1
        interval = f" [{low / scale:.{places}f}, {high / scale:.{places}f}]"
    power = ""
    if exponent is not None:
        power = f" \\times 10^{{{exponent}}}" if fmt == "latex" else f" ×10^{exponent}"
    if fmt == "latex":
        return f"${text}{interval}{power}$"
    return f"{text}{interval}{power}"


def p_value(value: float, fmt: str) -> str:
    """A p-value with two significant digits, ``< 1e-16`` style below the float floor."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--" if fmt == "latex" else "–"
    if value < 1e-16:
        return "$<10^{-16}$" if fmt == "latex" else "< 1e-16"
    return measure(value, None, None, 2, fmt)


def varying(cells: pd.DataFrame, kind: str) -> list[str]:
    """The options of ``kind`` (``problem_options`` or ``estimator_options``) whose values
    differ between cells of ``cells`` that have them."""
    rows = [json.loads(t) for t in cells[kind]]
    names = dict.fromkeys(n for values in rows for n in values)
    return [n for n in names if len({json.dumps(o[n]) for o in rows if n in o}) > 1]


def label(options_text: str, names: Sequence[str]) -> str:
    """``name=value`` of the options ``names`` that ``options_text`` (JSON) has."""
    values = json.loads(options_text)
    return ", ".join(f"{n}={values[n]}" for n in names if n in values)


def paper_table(cells: pd.DataFrame, fmt: str = "markdown", digits: int = 3) -> str:
    """The summary table of the cells with status ``ok`` and a truth, one block per problem
    (and set of problem options that varies), rows by estimator (with the options that
    vary), then K (see the module docstring).

    Raises:
        ValueError: for an unknown format, digits < 1, or no measured cell with a truth.
    """
    if fmt not in FORMATS:
        raise ValueError(f"invalid --format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if digits < 1:
        raise ValueError(f"invalid --digits {digits}: must be >= 1")
    ok = cells[(cells["status"] == "ok") & (cells["truth"] != "none")]
    if ok.empty:
        raise ValueError("no measured cell with a truth to tabulate (status ok, truth not none)")
    problem_keys = varying(ok, "problem_options")
    estimator_keys = varying(ok, "estimator_options")
    blocks = []
    for (problem, options), group in ok.groupby(["problem", "problem_options"], sort=False):
        title = problem + (
            f" ({label(options, problem_keys)})" if label(options, problem_keys) else ""
        )
        rows = []
        for row in group.itertuples():
            name = row.estimator
            extra = label(row.estimator_options, estimator_keys)
            cells_text = [f"{name} ({extra})" if extra else name, str(row.n_samples)]
            for column, _, has_interval in MEASURES:
                value = getattr(row, column)
                if has_interval:
                    low = getattr(row, f"{column}_ci_low", None)
                    high = getattr(row, f"{column}_ci_high", None)
                    cells_text.append(measure(value, low, high, digits, fmt))
                else:
                    cells_text.append(p_value(value, fmt))
            rows.append(cells_text)
        blocks.append((title, rows, group["truth"].iloc[0]))
    headings = ["estimator", "K"] + [heading for _, heading, _ in MEASURES]
    return _latex(blocks, headings) if fmt == "latex" else _markdown(blocks, headings)


def _markdown(blocks: list, headings: list[str]) -> str:
    out = []
    for title, rows, truth in blocks:
        out += [f"### {title}", "", f"truth: {truth}; {INTERVALS}", ""]
        out.append("| " + " | ".join(headings) + " |")
        out.append("|" + "|".join(["---", "--:"] + ["--:"] * (len(headings) - 2)) + "|")
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    out += [NOTE, ""]
    return "\n".join(out).rstrip() + "\n"


def _tex(text: str) -> str:
    return (
        text.replace("\\", "\\textbackslash{}")
        .replace("_", "\\_")
        .replace("%", "\\%")
        .replace("&", "\\&")
        .replace("#", "\\#")
    )


def _latex(blocks: list, headings: list[str]) -> str:
    width = len(headings)
    out = [
        f"% bench table: needs \\usepackage{{booktabs}}; {INTERVALS}",
        f"% {NOTE}",
        "\\begin{tabular}{l" + "r" * (width - 1) + "}",
        "\\toprule",
        " & ".join(_tex(h) for h in headings) + " \\\\",
    ]
    for title, rows, truth in blocks:
        heading = f"\\textit{{{_tex(title)}}} (truth: {_tex(truth)})"
        out += ["\\midrule", f"\\multicolumn{{{width}}}{{l}}{{{heading}}} \\\\"]
        out += [" & ".join([_tex(row[0]), *row[1:]]) + " \\\\" for row in rows]
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"
