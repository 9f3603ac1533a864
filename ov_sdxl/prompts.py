"""Prompt checks before a run: CLIP reads 77 tokens, and what a prompt loses past them is said, not hidden.

from ov_sdxl.prompts import truncation_notes
notes = truncation_notes(pipe, params)   # ["prompt: 93 tokens, CLIP reads 77; cut: 'in the style of ...'"]
"""

from __future__ import annotations

from typing import Any

from ov_sdxl.config import GenerationParams


def _cut(tokenizer: Any, text: str) -> str | None:
    ids = tokenizer(text, truncation=False, add_special_tokens=True).input_ids
    limit = tokenizer.model_max_length
    if len(ids) <= limit:
        return None
    lost = tokenizer.decode(ids[limit - 1 : -1])
    return f"{len(ids)} tokens, CLIP reads {limit}; cut: {lost!r}"


def truncation_notes(pipe: Any, params: GenerationParams) -> list[str]:
    """One note per prompt that the pipeline's tokenizers will truncate (each text is checked once)."""
    tokenizer = pipe.tokenizer_2 if pipe.tokenizer is None else pipe.tokenizer
    texts = {
        "prompt": params.prompt,
        "prompt_2": params.prompt_2,
        "negative_prompt": params.negative_prompt,
        "negative_prompt_2": params.negative_prompt_2,
    }
    notes = []
    for name, text in texts.items():
        if text:
            cut = _cut(tokenizer, text)
            if cut:
                notes.append(f"{name}: {cut}")
    return notes
