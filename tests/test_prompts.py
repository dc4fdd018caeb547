"""Prompt strategies (GenBench Table 6) as tests: each strategy yields the documented kind of prompt, deterministically."""

from __future__ import annotations

import pytest

from genbench.catalog import get_dataset
from genbench.errors import UsageError
from genbench.prompts import STRATEGIES, make_prompt, parse_strategy


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


def test_parse_strategy_accepts_case_and_combination_order():
    assert parse_strategy("ST") == "st"
    assert parse_strategy("NP+RD") == "np+rd"
    assert parse_strategy("rd+np") == "np+rd"
    assert all(parse_strategy(s) == s for s in STRATEGIES)
    with pytest.raises(UsageError) as err:
        parse_strategy("xx")
    assert err.value.field == "strategy"


def test_st_is_the_simple_template(digits):
    p = make_prompt("st", digits, 7, 3, run_seed=0)
    assert p.text == "a photo of the number 7."
    assert p.negative is None and p.strategy == "st"


def test_dt_uses_a_dataset_template_chosen_per_sample(digits):
    prompts = [make_prompt("dt", digits, 2, shot, run_seed=0) for shot in range(40)]
    assert all(p.template in digits.templates and p.text == p.template.format("2") for p in prompts)
    assert len({p.template for p in prompts}) > 1  # the choice varies across samples
    assert prompts == [make_prompt("dt", digits, 2, shot, run_seed=0) for shot in range(40)]
