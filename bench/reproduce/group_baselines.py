"""Group baselines of RL for language models: the advantage table of one binary-reward group,
and Dr. GRPO's claim that GRPO's per-sequence length normalisation lengthens incorrect
responses, measured on the ``policy`` problem.

Advantages. A group of K = 8 responses with 3 correct (reward 1) and 5 incorrect (0): GRPO's
A = (r - mean r) / std r (std with ddof 1, as ``torch.std``; eps = 0 here, the default
eps = 1e-4 moves the fourth decimal), the same without the std, and RLOO's
A_k = r_k - mean_{j != k} r_j. Derived: mean r = 3/8 and std r = sqrt(15/56), so GRPO gives
+0.625 / 0.5175 = +1.2076 and -0.375 / 0.5175 = -0.7246; without the std +0.625 / -0.375;
RLOO +5/7 = +0.7143 and -3/7 = -0.4286 (= 8/7 times the no-std values). The GRPO and no-std
rows are computed with ``estimators.group.group_advantages`` (on cost = -reward).

Length bias. Liu et al. (2025, Section 3.1) argue that dividing each response's
log-probability by its own length |o| weighs the tokens of short responses more: with a
positive advantage short correct responses are favoured, with a negative one long incorrect
responses are penalised less, so incorrect responses grow longer during training. Measured
here: ``policy`` with ``rule=first`` (correctness is decided by the first token, so length
changes nothing about the reward and any length drift is the normaliser's), trained with Adam
by ``grpo`` with ``length_norm`` = sequence, token and none, and by ``dr_grpo``; the record is
the exact (enumerated) expected length of incorrect and of correct responses,
E[|o| | r = 0] and E[|o| | r = 1]. The claim is checked across seeds on the final values,
sequence against Dr. GRPO's constant normaliser: PASS where the difference exceeds z = 2.576
standard errors (two-sided 1%) in the claimed direction, FAIL where it does in the other,
"not resolved" otherwise.

References: Shao et al. (2024), "DeepSeekMath", arXiv:2402.03300, Section 4.1; Ahmadian et
al. (2024), "Back to Basics", ACL, Section 3 (RLOO); Liu et al. (2025), "Understanding
R1-Zero-Like Training: A Critical Perspective", arXiv:2503.20783, Section 3.1 and Fig. 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import torch
from plotnine import (
    aes,
    facet_grid,
    geom_line,
    geom_point,
    ggplot,
    labs,
    scale_color_manual,
    scale_shape_manual,
    theme,
)

from bench.cell.seeds import derive_seed
from bench.report.theme import PALETTE, paper_theme
from bench.reproduce.base import (
    Claim,
    Mode,
    Outcome,
    Reference,
    Reproduction,
    comparison_row,
)
from bench.reproduce.training import TrainSettings, train_curve
from estimators.group import group_advantages
from problems.policy import Policy

ADVANTAGE_SOURCE = ("issue 23's worked example of the definitions of Shao et al. (2024) "
                    "Sec. 4.1 and Ahmadian et al. (2024) Sec. 3")
LENGTH_SOURCE = "Liu et al. (2025), arXiv:2503.20783, Sec. 3.1 and Fig. 5"
PUBLISHED = {
    ("grpo", "correct"): 1.2076, ("grpo", "incorrect"): -0.7246,
    ("no std", "correct"): 0.6250, ("no std", "incorrect"): -0.3750,
    ("rloo", "correct"): 0.7143, ("rloo", "incorrect"): -0.4286,
}
#: two-sided 1% critical value of the claims' z-tests
CRITICAL_Z = 2.576
PROBLEM = {"vocab": 2, "length": 4, "prompts": 4, "rule": "first"}
LR, K = 0.05, 8
SCALE: dict[str, dict[str, int]] = {
    "short": {"steps": 150, "every": 10, "seeds": 4},
    "full": {"steps": 400, "every": 20, "seeds": 12},
}
SERIES = (
    ("grpo (sequence)", "grpo", {"length_norm": "sequence"}),
    ("grpo (token)", "grpo", {"length_norm": "token"}),
    ("grpo (none)", "grpo", {"length_norm": "none"}),
    ("dr_grpo", "dr_grpo", {}),
)
#: one colour and marker per series (grpo's and dr_grpo's own for sequence and dr_grpo)
COLOURS = (PALETTE[4], PALETTE[2], PALETTE[0], PALETTE[3])
SHAPES = ("v", "s", "o", "^")


@dataclass(frozen=True)
class ResolvedClaim(Claim):
    """A claim with three outcomes: PASS, FAIL, or "not resolved" (the measurement cannot
    tell at its uncertainty); ``passed`` None means not resolved."""

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "not resolved"}[self.passed]


def advantages(rewards: list[float]) -> dict[str, torch.Tensor]:
    """The three advantages of one group of rewards ``[K]`` (module docstring)."""
    r = torch.tensor(rewards, dtype=torch.float64)
    cost = -r.reshape(-1, 1, 1)  # [K, R=1, F=1]
    grpo = -group_advantages(cost, "std", 1, 0.0).flatten()
    no_std = -group_advantages(cost, "none", 0, 0.0).flatten()
    rloo = r - (r.sum() - r) / (r.numel() - 1)
    return {"grpo": grpo, "no std": no_std, "rloo": rloo}


def three_way(difference: float, se: float) -> bool | None:
    """True / False where ``difference`` is beyond ``CRITICAL_Z`` standard errors above /
    below zero, else None (not resolved)."""
    if se == 0:
        return None if difference == 0 else difference > 0
    z = difference / se
    return True if z > CRITICAL_Z else (False if z < -CRITICAL_Z else None)


def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.inf
    return mean, math.sqrt(variance / n)


def length_figure(data: pd.DataFrame, caption: str):
    """The exact expected lengths of incorrect and correct responses and the expected reward
    along training, mean over seeds, one colour and marker per normalisation."""
    panels = {"length_incorrect": "E[|o| | incorrect]", "length_correct": "E[|o| | correct]",
              "expected_reward": "expected reward"}
    shown = data[data.metric.isin(list(panels))]
    shown = shown.groupby(["variant", "step", "metric"], as_index=False)["value"].mean()
    shown = shown.rename(columns={"variant": "series"})
    shown["panel"] = pd.Categorical(shown["metric"].map(panels), categories=list(panels.values()))
    labels = [label for label, _, _ in SERIES]
    shown["series"] = pd.Categorical(shown["series"], categories=labels)
    return (
        ggplot(shown, aes("step", "value", color="series", shape="series"))
        + geom_line(size=0.5)
        + geom_point(size=1.5)
        + facet_grid("panel ~ .", scales="free_y")
        + scale_color_manual(values=dict(zip(labels, COLOURS, strict=True)))
        + scale_shape_manual(values=dict(zip(labels, SHAPES, strict=True)))
        + labs(x="training step", y="", color="normaliser", shape="normaliser",
               caption=caption)
        + paper_theme()
        + theme(figure_size=(6.0, 6.0))
    )


class GroupBaselines(Reproduction):
    """The advantage table, and the length bias of per-sequence normalisation."""

    name = "group_baselines2025"
    title = ("advantages of a binary group of 8 with 3 correct; per-sequence length "
             "normalisation and the length of incorrect responses on the policy problem")
    paper = ("Shao et al. (2024), arXiv:2402.03300 (GRPO); Ahmadian et al. (2024), ACL (RLOO); "
             "Liu et al. (2025), arXiv:2503.20783 (Dr. GRPO)")
    target = "GRPO/RLOO advantages; Liu et al. (2025) Sec. 3.1, Fig. 5"
    estimators = ("grpo", "dr_grpo")
    runtime: ClassVar[dict[str, str]] = {"short": "8 s", "full": "38 s"}
    trains = True

    def run(self, mode: Mode, seed: int, progress: bool) -> Outcome:
        scale = self.scaled(SCALE[mode])
        comparison, claims = self._advantage_rows()
        data, errors = self._train(scale, seed, progress)
        rows, length_claims = self._length_rows(data)
        notes = [
            "the advantage values are stated in the task, not in the papers' text; they are "
            "what the papers' definitions give (module docstring), eps = 0",
            f"length bias: policy {PROBLEM}, K = {K}, Adam lr {LR}, {scale['seeds']} seeds; "
            "lengths are exact expectations (enumeration) at the trained parameters; the "
            "paper trains a language model on math problems, this is the mechanism in "
            "miniature, with correctness independent of length",
        ]
        notes += self.scale_note(mode, scale["steps"], SCALE["full"]["steps"])
        caption = f"ours, {mode} version, mean of {scale['seeds']} seeds. Claim: {LENGTH_SOURCE}"
        figure = length_figure(data, caption) if not data.empty else None
        return self.outcome(mode, data, comparison + rows, claims + length_claims, notes,
                            figure, errors)

    def _advantage_rows(self) -> tuple[list[dict[str, Any]], list[Claim]]:
        values = advantages([1.0] * 3 + [0.0] * 5)
        rows, agree = [], True
        for (kind, which), published in PUBLISHED.items():
            ours = float(values[kind][0 if which == "correct" else -1])
            agree &= round(ours, 4) == published
            # not in the papers' text: a derived value, the task's statement in the note
            rows.append(comparison_row(f"advantage, {kind}, {which} (K=8, 3 correct)", ours,
                                       None, f"exact, derived; stated {published:+.4f}"))
        claim = ResolvedClaim("the advantage table of a group of 8 with 3 correct, to 4 "
                              "decimals", ADVANTAGE_SOURCE, agree,
                              "all six agree" if agree else "some differ (see the table)")
        return rows, [claim]

    def _train(self, scale: dict[str, int], seed: int, progress: bool
               ) -> tuple[pd.DataFrame, list[str]]:
        template = Policy(PROBLEM, dtype=torch.float64)
        settings = TrainSettings(steps=scale["steps"], lr=LR, n_samples=K,
                                 every=scale["every"], metrics=True)
        rows, errors = [], []
        for label, name, options in SERIES:
            for index in range(scale["seeds"]):
                try:
                    curve = train_curve(template, name, options, settings,
                                        derive_seed(self.name, label, seed, index), label,
                                        progress)
                except Exception as err:  # report it, keep the other series
                    errors.append(f"{label} seed {index} failed: {type(err).__name__}: {err}")
                    continue
                rows += [{"setting": "policy rule=first", "seed": index, **r, "series": name,
                          "variant": label} for r in curve]
        return pd.DataFrame(rows), errors

    def _length_rows(self, data: pd.DataFrame) -> tuple[list[dict[str, Any]], list[Claim]]:
        last = data[data.step == data.step.max()] if not data.empty else data
        finals: dict[tuple[str, str], list[float]] = {}
        rows = []
        for label, _, _ in SERIES:
            for metric in ("length_incorrect", "length_correct", "expected_reward"):
                part = last[(last.variant == label) & (last.metric == metric)]["value"]
                finals[label, metric] = list(part)
                if len(part) >= 2:
                    mean, se = mean_se(list(part))
                    rows.append(comparison_row(f"final {metric}, {label}", mean,
                                               Reference(metric, LENGTH_SOURCE,
                                                         note="no value for this problem"),
                                               f"mean of {len(part)} seeds, se {se:.3g}"))
        claims = [
            self._direction_claim(finals, "length_incorrect", +1,
                                  "per-sequence normalisation makes incorrect responses longer "
                                  "than a constant normaliser (Dr. GRPO) does"),
            self._direction_claim(finals, "length_correct", -1,
                                  "per-sequence normalisation makes correct responses shorter "
                                  "than a constant normaliser (Dr. GRPO) does"),
        ]
        return rows, claims

    @staticmethod
    def _direction_claim(finals, metric: str, sign: int, text: str) -> Claim:
        a, b = finals.get(("grpo (sequence)", metric), []), finals.get(("dr_grpo", metric), [])
        if len(a) < 2 or len(b) < 2:
            return ResolvedClaim(text, LENGTH_SOURCE, None, "not resolved: too few seeds ran")
        (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
        difference, se = sign * (ma - mb), math.hypot(sa, sb)
        return ResolvedClaim(
            text, LENGTH_SOURCE, three_way(difference, se),
            f"final E[|o|] {ma:.3f} (sequence) vs {mb:.3f} (dr_grpo), difference "
            f"{ma - mb:+.3f} +- {se:.3f} (se over {len(a)} + {len(b)} seeds; z = "
            f"{difference / se if se else math.inf:+.2f}, critical {CRITICAL_Z})",
        )
