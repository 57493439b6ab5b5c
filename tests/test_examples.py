"""The example outputs of README.md and docs/*.md are what the code prints (docs/examples.py):
small versions of the slow examples, whose rows must be rows of the page's block."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def examples_module():
    spec = importlib.util.spec_from_file_location("docs_examples", ROOT / "docs" / "examples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


examples = examples_module()


@pytest.mark.parametrize("name", list(examples.EXAMPLES))
def test_page_shows_what_the_code_prints(name):
    example = examples.EXAMPLES[name]
    got = example.make(True)
    assert got.strip(), f"{name} printed nothing"
    assert examples.differences(example, got, fast=True) == [], (
        f"{example.page} is stale: run python docs/examples.py {name}"
    )


def test_the_check_notices_a_changed_number():
    example = examples.EXAMPLES["quickstart"]
    block = examples.read_block(example)
    lines = block.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("bernoulli_toy"))
    row = lines[header + 1]  # the block's first row, under its problem line
    words = row.split()
    cut = next(i for i, w in enumerate(words) if w in examples.TRUTHS) + 3  # the variance
    changed = row.replace(words[cut], str(float(words[cut]) * 1.01), 1)
    assert examples.differences(example, f"{lines[header]}\n{changed}\n", fast=True)
    assert examples.differences(example, f"{lines[header]}\n{row}\n", fast=True) == []
