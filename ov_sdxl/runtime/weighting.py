"""Prompt weighting and long prompts, computed with the pipeline's own (OpenVINO) text encoders.

    from ov_sdxl.runtime.weighting import parse_weights, needs_embeddings, chunk_count, encode
    parse_weights("a (red:1.3) fox, [blurry]")  # [("a ", 1.0), ("red", 1.3), (" fox, ", 1.0), ("blurry", 1/1.1)]
    if needs_embeddings(params):
        embeds = encode(pipe, params, chunk_count(pipe, params))   # prompt_embeds, pooled_prompt_embeds, ...

Syntax (as in the common SD web UIs): ``(text)`` multiplies the weight of its tokens by 1.1, ``[text]`` divides it
by 1.1, ``(text:1.5)`` sets a factor, nesting multiplies, ``\\(`` and ``\\)`` are literal brackets.

Each text is tokenized without truncation and cut into chunks of 75 tokens; each chunk is encoded as SDXL encodes
a prompt (start token, 75 tokens, end token, padding to 77; the penultimate hidden layer of each encoder, the two
concatenated) and the chunks are concatenated along the sequence. Weights scale each token's embedding, and the
chunk's mean is then restored, so emphasis changes direction rather than overall magnitude. The pooled embedding
is the second encoder's, of the first chunk, unweighted. A prompt with no weights that fits in 77 tokens does not
come here at all: diffusers encodes it exactly as before. Textual-inversion tokens (see embeddings.py) work here
too, weighted like any word: a multi-vector token is written out as diffusers does (``tok tok_1 ...``) first.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ov_sdxl.config import GenerationParams

EMPHASIS = 1.1
CHUNK = 75  # content tokens per 77-token window
_TOKEN = re.compile(r"\\[()\[\]\\]|\(|\[|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|\)|\]|[^\\()\[\]:]+|:|\\")


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into (fragment, weight) pairs; brackets left open weigh until the end of the text."""
    pieces: list[list[Any]] = []  # [fragment, weight]
    round_open: list[int] = []  # where each open bracket's content starts in ``pieces``
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKEN.finditer(text):
        token, factor = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif factor is not None and round_open:
            scale(round_open.pop(), float(factor))
        elif token == ")" and round_open:
            scale(round_open.pop(), EMPHASIS)
        elif token == "]" and square_open:
            scale(square_open.pop(), 1 / EMPHASIS)
        else:
            pieces.append([token, 1.0])
    for start in round_open:
        scale(start, EMPHASIS)
    for start in square_open:
        scale(start, 1 / EMPHASIS)
    merged: list[tuple[str, float]] = []
    for fragment, weight in pieces:
        if merged and math.isclose(merged[-1][1], weight):
            merged[-1] = (merged[-1][0] + fragment, weight)
        elif fragment:
            merged.append((fragment, weight))
    return merged


def _texts(params: GenerationParams) -> dict[str, str | None]:
    return {
        "prompt": params.prompt,
        "prompt_2": params.prompt_2 if params.prompt_2 is not None else params.prompt,
        "negative": params.negative_prompt,
        "negative_2": params.negative_prompt_2 if params.negative_prompt_2 is not None else params.negative_prompt,
    }


def _expand(pipe: Any, tokenizer: Any, text: str) -> str:
    """``text`` with multi-vector textual-inversion tokens written out as diffusers does (``tok tok_1 ...``)."""
    convert = getattr(pipe, "maybe_convert_prompt", None)  # diffusers' TextualInversionLoaderMixin
    return convert(text, tokenizer) if convert is not None else text


def _tokens(pipe: Any, tokenizer: Any, text: str) -> tuple[list[int], list[float]]:
    ids: list[int] = []
    weights: list[float] = []
    for fragment, weight in parse_weights(text):
        fragment = _expand(pipe, tokenizer, fragment)
        fragment_ids = tokenizer(fragment, add_special_tokens=False, truncation=False).input_ids
        ids += fragment_ids
        weights += [weight] * len(fragment_ids)
    return ids, weights


def needs_embeddings(pipe: Any, params: GenerationParams) -> bool:
    """True when a text uses the weighting syntax or is longer than one 77-token window."""
    for text in _texts(params).values():
        if not text:
            continue
        if "".join(fragment for fragment, _ in parse_weights(text)) != text:  # brackets, factors or escapes
            return True
        for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
            if tokenizer is None:
                continue
            if len(tokenizer(_expand(pipe, tokenizer, text), truncation=False).input_ids) > CHUNK + 2:
                return True
    return False


def chunk_count(pipe: Any, params: GenerationParams) -> int:
    """How many 77-token windows the longest text needs (prompt and negative get the same number)."""
    longest = 0
    for text in _texts(params).values():
        for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
            if text and tokenizer is not None:
                longest = max(longest, len(_tokens(pipe, tokenizer, text)[0]))
    return max(1, math.ceil(longest / CHUNK))


def _encode_one(pipe: Any, tokenizer: Any, encoder: Any, text: str, chunks: int) -> tuple[Any, Any]:
    """(hidden states [1, 77*chunks, D], pooled [1, P] or None) for one text on one encoder."""
    import torch

    ids, weights = _tokens(pipe, tokenizer, text)
    hidden, pooled = [], None
    for i in range(chunks):
        part, part_w = ids[i * CHUNK : (i + 1) * CHUNK], weights[i * CHUNK : (i + 1) * CHUNK]
        pad = CHUNK - len(part)
        window = [tokenizer.bos_token_id, *part, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * pad
        window_w = torch.tensor([1.0, *part_w, 1.0] + [1.0] * pad)
        out = encoder(torch.tensor([window]), output_hidden_states=True)
        states = out.hidden_states[-2]
        if pooled is None and out[0].ndim == 2:
            pooled = out[0]
        if not torch.all(window_w == 1.0):
            mean = states.mean()
            states = states * window_w[None, :, None]
            states = states * (mean / states.mean())
        hidden.append(states)
    return torch.cat(hidden, dim=1), pooled


def encode(pipe: Any, params: GenerationParams, chunks: int) -> dict[str, Any]:
    """Keyword arguments for a diffusers SDXL ``__call__``: prompt_embeds, pooled_prompt_embeds and negatives."""
    import torch

    texts = _texts(params)
    if texts["negative"] is None and not pipe.config.force_zeros_for_empty_prompt:
        texts["negative"] = texts["negative_2"] = ""  # as diffusers does without a negative prompt (the refiner)
    pairs = [(pipe.tokenizer, pipe.text_encoder, ""), (pipe.tokenizer_2, pipe.text_encoder_2, "_2")]
    pairs = [pair for pair in pairs if pair[1] is not None]
    out: dict[str, Any] = {}
    for side, prefix in (("prompt", ""), ("negative", "negative_")):
        if texts[side] is None:
            continue  # diffusers makes the zero negative itself
        states, pooled = [], None
        for tokenizer, encoder, suffix in pairs:
            hidden, pooled_part = _encode_one(pipe, tokenizer, encoder, texts[side + suffix] or "", chunks)
            states.append(hidden)
            pooled = pooled_part if pooled_part is not None else pooled
        out[f"{prefix}prompt_embeds"] = torch.cat(states, dim=-1)
        out[f"{prefix}pooled_prompt_embeds"] = pooled
    return out
