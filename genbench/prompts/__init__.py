"""Prompt strategies of the GenBench paper (Table 6), real prompt weighting, and category enhancement.

``strategies`` turns (dataset, class, shot) into one deterministic prompt; ``weighting`` reads the community's
emphasis syntax into weighted text embeddings; ``enhance`` holds the T5 category enhancer (CE). Nothing here imports
torch until a model is loaded.
"""

from genbench.prompts.enhance import CE_DEFAULT_REF, CategoryEnhancer
from genbench.prompts.strategies import (
    EMPHASIS_MODES,
    NEGATIVE_STRATEGIES,
    NP_MAX_CLASSES,
    NP_QUALITY,
    RD_QUALITY,
    RD_SUFFIX,
    STRATEGIES,
    Prompt,
    make_prompt,
    parse_strategy,
    tig_init_index,
)

__all__ = ["CE_DEFAULT_REF", "EMPHASIS_MODES", "NEGATIVE_STRATEGIES", "NP_MAX_CLASSES", "NP_QUALITY", "RD_QUALITY", "RD_SUFFIX", "STRATEGIES", "CategoryEnhancer", "Prompt",
           "make_prompt", "parse_strategy", "tig_init_index"]
