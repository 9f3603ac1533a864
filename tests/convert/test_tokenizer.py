"""The tiny model's tokenizers are real CLIP BPE tokenizers: SDXL's ids, 77 tokens, truncation, padding."""

from transformers import CLIPTokenizer


def test_ids_match_clip(tiny_sources):
    base, _ = tiny_sources
    tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer")
    ids = tokenizer("a photo of an astronaut riding a horse").input_ids
    # CLIP's vocabulary: <|startoftext|> 49406, "a</w>" 320, "photo</w>" 1125 ... <|endoftext|> 49407
    assert ids == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77


def test_padding_and_truncation(tiny_sources):
    base, refiner = tiny_sources
    tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(refiner / "tokenizer_2")
    padded = tokenizer("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77 and padded[3:] == [49407] * 74  # the first tokenizer pads with <|endoftext|>
    padded_2 = tokenizer_2("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert padded_2[3] == 49407 and padded_2[4:] == [0] * 73  # the second pads with "!" (id 0)
    long = tokenizer(" ".join(["horse"] * 100), padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77 and long[0] == 49406 and long[-1] == 49407
