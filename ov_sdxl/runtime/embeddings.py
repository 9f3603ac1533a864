"""Textual inversion at run time: SDXL embeddings added to the OpenVINO text encoders and their tokenizers.

    from ov_sdxl import SDXLRuntime
    runtime = SDXLRuntime.from_dir("models/sdxl", embeddings=("unaestheticXLv31.safetensors:<bad>",))
    runtime.load_embedding("style.safetensors")           # token "<style>": the file's stem in angle brackets
    runtime.text2img("a lighthouse, (<style>:1.2)", negative_prompt="<bad>")
    [e.token for e in runtime.embeddings]                 # ["<bad>", "<style>"]

An SDXL embedding is one ``.safetensors`` file with ``clip_l`` [n, 768] (the first text encoder) and ``clip_g``
[n, 1280] (the second, the refiner's only one). The token is added to both tokenizers as diffusers'
``load_textual_inversion`` adds it (n > 1: ``tok tok_1 ... tok_{n-1}``, which diffusers' ``maybe_convert_prompt``
expands in every prompt), and its vectors become new rows of each text encoder's token table. CLIP lowercases
prompts, so tokens match in any case; they are registered lowercase so that the expansion finds them.

optimum-intel's ``OVTextualInversionLoaderMixin`` is not used: it appends f32 rows to the table Constant by name,
which matches nothing in an fp16 IR (the table is f16 + Convert there: the tokens would silently read zeros) and
the wrong type in an int8/int4 one, and it needs a first text encoder (the refiner has none). Here the table is
left as it is, whatever its storage: ids past its end read a second, small f32 table (Gather + Select), so the
model stays compressed and only the text encoders are recompiled.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError, GenerationError, ModelNotFoundError
from ov_sdxl.specs import EmbeddingSpec

log = logging.getLogger(__name__)

KEYS = {"clip_l": "text_encoder", "clip_g": "text_encoder_2"}  # file key -> the base's sub-model it extends
ROWS = "ov_sdxl.textual_inversion.rows"  # friendly name of the added table in the IR
_ID_PATH = ("Convert", "Reshape", "Squeeze", "Unsqueeze")  # nodes between input_ids and the table's Gather
_ANGLED = re.compile(r"<[^<>\s]+>")  # what looks like a token in a prompt
_TEXTS = ("prompt", "prompt_2", "negative_prompt", "negative_prompt_2")


@dataclass(frozen=True)
class Embedding:
    """One loaded SDXL embedding: its token, file, and vectors per encoder (float32 arrays [n, width])."""

    token: str
    path: Path
    vectors: dict[str, Any]  # "clip_l" / "clip_g" -> numpy float32 [n, width]
    sha256: str

    @property
    def count(self) -> int:
        return len(self.vectors["clip_g"])

    @property
    def names(self) -> list[str]:
        """What the tokenizers get: the token (lowercase, as CLIP reads it), then diffusers' ``tok_1``... names."""
        token = self.token.lower()
        return [token] + [f"{token}_{i}" for i in range(1, self.count)]

    def describe(self) -> str:
        vectors = f"{self.count} vector{'s' if self.count > 1 else ''}"
        return f"{self.token} ({self.path.name}, {vectors}, sha256 {self.sha256[:12]})"


def text_widths(base_dir: Path) -> dict[str, int]:
    """The hidden size of each of the base's text encoders, keyed as in embedding files (from their configs)."""
    widths = {}
    for key, part in KEYS.items():
        config = base_dir / part / "config.json"
        if config.is_file():
            widths[key] = int(json.loads(config.read_text(encoding="utf-8"))["hidden_size"])
    return widths


def read_embedding(spec: EmbeddingSpec, widths: dict[str, int]) -> Embedding:
    """Read and check an SDXL embedding file: exactly ``clip_l`` and ``clip_g``, [n, width], finite, same n."""
    import numpy as np
    from safetensors import SafetensorError, safe_open

    from ov_sdxl.layout import sha256_file

    path = spec.path
    if not path.is_file():
        raise ModelNotFoundError(f"embedding file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:  # reads the header; tensors only if the keys fit
            names = list(handle.keys())
            tensors = {name: handle.get_tensor(name) for name in names} if set(names) == set(KEYS) else {}
            shapes = ", ".join(f"{n} {handle.get_slice(n).get_shape()}" for n in names) or "nothing"
    except (SafetensorError, ValueError, OSError) as exc:
        raise ConfigError(f"embedding file {path} cannot be read as safetensors: {exc}") from None
    expected = " and ".join(f"{key} [n, {widths.get(key, '?')}]" for key in KEYS)
    if set(tensors) != set(KEYS):
        raise ConfigError(
            f"embedding file {path} holds {shapes}; an SDXL embedding holds exactly {expected} "
            "(an SD 1.x/2.x embedding does not fit SDXL's two text encoders)"
        )
    vectors = {}
    for key, tensor in tensors.items():
        width = widths.get(key)
        if tensor.ndim != 2 or tensor.shape[0] < 1 or not tensor.is_floating_point() or tensor.shape[1] != width:
            raise ConfigError(
                f"embedding file {path}: {key} is {list(tensor.shape)} {str(tensor.dtype).replace('torch.', '')}; "
                f"this model needs floats [n, {width}] ({KEYS[key]} has hidden size {width})"
            )
        vectors[key] = tensor.float().numpy()
        if not np.isfinite(vectors[key]).all():
            raise ConfigError(f"embedding file {path}: {key} holds NaN or infinite values")
    if len(vectors["clip_l"]) != len(vectors["clip_g"]):
        raise ConfigError(f"embedding file {path} holds {shapes}: clip_l and clip_g must have as many vectors")
    return Embedding(spec.token, path, vectors, sha256_file(path))


def tokenizer_vocab(folder: Path) -> set[str]:
    """The tokens of a saved tokenizer (``tokenizer.json`` or ``vocab.json``), read without loading it."""
    if (folder / "tokenizer.json").is_file():
        saved = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        return set(saved["model"]["vocab"]) | {added["content"] for added in saved.get("added_tokens", [])}
    if (folder / "vocab.json").is_file():
        return set(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    return set()


class EmbeddingSet:
    """A runtime's embeddings, and which tokenizers and text encoders have them already (by object id)."""

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)
        self.items: list[Embedding] = []
        self._done: dict[int, int] = {}  # id(tokenizer or text encoder part) -> how many of ``items`` it has
        self._pattern: re.Pattern | None = None

    @functools.cached_property
    def vocab(self) -> set[str]:
        return tokenizer_vocab(self.base_dir / "tokenizer") | tokenizer_vocab(self.base_dir / "tokenizer_2")

    def load(self, spec: EmbeddingSpec, pipes: list[Any]) -> Embedding:
        """Read ``spec``'s file, check it, keep it and give it to the already loaded pipelines ``pipes``."""
        embedding = read_embedding(spec, text_widths(self.base_dir))
        self.add(embedding)
        for pipe in pipes:
            self.apply(pipe)
        log.debug("textual inversion: %s", embedding.describe())
        return embedding

    def add(self, embedding: Embedding) -> None:
        """Check the new token against the vocabulary and the loaded tokens, then keep it (applied later)."""
        loaded = {name: item for item in self.items for name in item.names}
        for name in embedding.names:
            if name in loaded:
                raise ConfigError(
                    f"embedding token {embedding.token} ({embedding.path}) is already loaded, as {name} of "
                    f"{loaded[name].path}; give this file another token with FILE:TOKEN"
                )
            if name in self.vocab or f"{name}</w>" in self.vocab:
                raise ConfigError(
                    f"embedding token {embedding.token} ({embedding.path}) is a word CLIP already knows ({name}); "
                    f"choose another, e.g. {embedding.path.name}:<{embedding.token.strip('<>')}>"
                )
        self.items.append(embedding)
        tokens = sorted((item.token for item in self.items), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(t) for t in tokens), re.IGNORECASE)

    def canonical(self, text: str | None) -> str | None:
        """``text`` with each loaded token as registered (lowercase), so diffusers' multi-vector expansion finds
        it; CLIP reads both alike, so nothing else changes."""
        if not text or self._pattern is None:
            return text
        return self._pattern.sub(lambda match: match.group(0).lower(), text)

    def canonical_params(self, params: Any) -> Any:
        """``params`` (GenerationParams) with ``canonical`` prompts: what the pipelines are given."""
        import dataclasses

        texts = {name: getattr(params, name) for name in _TEXTS}
        changed = {name: self.canonical(text) for name, text in texts.items() if self.canonical(text) != text}
        return dataclasses.replace(params, **changed) if changed else params

    def notes(self, params: Any) -> list[str]:
        """What in ``params``' prompts looks meant for an embedding but is plain text: ``<word>`` that is no
        loaded token, or a token's name written without its angle brackets."""
        known = {item.token.lower() for item in self.items}
        out = []
        for name in _TEXTS:
            text = getattr(params, name) or ""
            for word in dict.fromkeys(w for w in _ANGLED.findall(text) if w.lower() not in known):
                loaded = ", ".join(item.token for item in self.items) or "none"
                out.append(f"{name}: {word} is no embedding token (loaded: {loaded}), so it is read as plain text")
            for item in self.items:
                bare = item.token.strip("<>")
                if bare != item.token and re.search(rf"(?<![<\w]){re.escape(bare)}(?![>\w])", text, re.I):
                    out.append(f"{name}: {bare} is read as plain text; the embedding's token is {item.token}")
        return out

    def metadata(self) -> dict[str, str]:
        """What the images' metadata records about the embeddings (nothing when none is loaded)."""
        return {"embeddings": "; ".join(item.describe() for item in self.items)} if self.items else {}

    def apply(self, pipe: Any) -> None:
        """Give ``pipe``'s tokenizers and text encoders the embeddings they do not have yet."""
        pairs = ((pipe.tokenizer, pipe.text_encoder, "clip_l"), (pipe.tokenizer_2, pipe.text_encoder_2, "clip_g"))
        for tokenizer, encoder, key in pairs:
            if tokenizer is None or encoder is None:
                continue  # the refiner has no first text encoder
            new_rows = [item.vectors[key] for item in self.items[self._done.get(id(encoder), 0) :]]
            if new_rows:
                import numpy as np

                add_rows(encoder.model, np.concatenate(new_rows))
                encoder.clear_requests()  # recompiled on next use; nothing else is
                self._done[id(encoder)] = len(self.items)
            for item in self.items[self._done.get(id(tokenizer), 0) :]:
                tokenizer.add_tokens(item.names)
            self._done[id(tokenizer)] = len(self.items)
            self._check_ids(tokenizer, encoder.model)

    def _check_ids(self, tokenizer: Any, model: Any) -> None:
        names = [name for item in self.items for name in item.names]
        first = token_table(model)[1].get_partial_shape()[0].get_length()
        ids = tokenizer.convert_tokens_to_ids(names)
        if ids != list(range(first, first + len(names))):
            raise GenerationError(
                f"textual inversion needs the tokenizer's vocabulary ({len(tokenizer) - len(names)} tokens) to "
                f"match the text encoder's token table ({first} rows); this model's do not"
            )
        for name in names:
            if tokenizer.tokenize(name) != [name]:
                raise ConfigError(f"embedding token {name} is not read back as one token by the CLIP tokenizer")


def token_table(model: Any) -> tuple[Any, Any]:
    """(the Gather reading token embeddings, the output holding its table): the Gather indexed by input_ids."""
    (ids,) = [port for port in model.inputs if port.get_any_name() == "input_ids"]
    frontier = [ids.get_node()]
    while frontier:
        node = frontier.pop()
        for output in node.outputs():
            for target in output.get_target_inputs():
                consumer = target.get_node()
                kind = consumer.get_type_name()
                if kind == "Gather" and target.get_index() == 1:
                    return consumer, consumer.input_value(0)
                if (kind in _ID_PATH and target.get_index() == 0) or (kind == "Select" and target.get_index() == 2):
                    frontier.append(consumer)  # ids reshaped or cast; or our own remapping (see add_rows)
    raise GenerationError("no token-embedding Gather fed by input_ids in this text encoder: cannot add embeddings")


def add_rows(model: Any, rows: Any) -> None:
    """Append ``rows`` [k, width] to the token table of a text encoder ``ov.Model``, in place.

    The first time, ids >= V (the table's rows) are routed to a new f32 table: Select(ids >= V, new[ids - V],
    table[ids]). Later calls replace that new table with a longer one.
    """
    import numpy as np
    from openvino import opset13 as ops

    gather, table = token_table(model)
    width = table.get_partial_shape()[1].get_length()
    if rows.shape[1] != width:
        raise ConfigError(f"embedding rows are {rows.shape[1]} wide; this text encoder's tokens are {width}")
    existing = [op for op in model.get_ops() if op.get_friendly_name() == ROWS]
    if existing:
        old = existing[0]
        bigger = ops.constant(np.concatenate([old.get_data(), rows]).astype(np.float32), name=ROWS)
        for target in old.output(0).get_target_inputs():
            target.replace_source_output(bigger.output(0))
    else:
        ids = gather.input_value(1)
        vocab = ops.constant(np.array(table.get_partial_shape()[0].get_length()), ids.get_element_type())
        zero = ops.constant(np.array(0), ids.get_element_type())
        added = ops.greater_equal(ids, vocab)
        consumers = list(gather.output(0).get_target_inputs())
        gather.input(1).replace_source_output(ops.select(added, zero, ids).output(0))
        new_table = ops.constant(rows.astype(np.float32), name=ROWS)
        new_ids = ops.select(added, ops.subtract(ids, vocab), zero)
        looked_up = ops.convert(ops.gather(new_table, new_ids, 0), gather.get_output_element_type(0))
        mixed = ops.select(ops.unsqueeze(added, -1), looked_up, gather.output(0))
        for target in consumers:
            target.replace_source_output(mixed.output(0))
    model.validate_nodes_and_infer_types()
