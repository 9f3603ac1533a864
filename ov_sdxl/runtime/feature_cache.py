"""Feature reuse across denoising steps (DeepCache: Ma et al., CVPR 2024) on an OpenVINO UNet.

    from ov_sdxl.runtime.feature_cache import FeatureCache
    cache = FeatureCache(device="CPU", ov_config={})       # one per runtime: the compiled models it made
    with cache.call(pipe.unet, pipe.scheduler, interval=3, branch=0):
        pipe(...)                                          # each UNet call runs the full or the shallow model

A "full" step runs the whole UNet; the next ``interval - 1`` steps run only the shallow path and reuse the deep
features of the last full step. Which layers a skipped step runs is DeepCache's rule (``DeepCacheSDHelper``,
``cache_branch_id``): branch ``K`` is block ``K // 3``, layer ``K % 3``; every down layer from it on, the mid
block and every up layer before its mirror are skipped. For SDXL's branch 0 that leaves ``conv_in``, the time
embedding, the last resnet of the last up block and ``conv_out``.

Both models are cut from the UNet's own IR (any weight format: the layers are the same objects), not exported
again: OpenVINO names every node after the PyTorch module it came from (``__module.model.up_blocks.2.resnets.1/…``),
which says on which side of the cut it lies. The features are the tensors, computed from the noisy sample, that a
skipped node produces and a node of the shallow path reads; the full model returns them as extra outputs, the
shallow model takes them as inputs.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError

log = logging.getLogger(__name__)

_PATH = re.compile(r"^__module\.(?:model\.)?([\w.]+?)/")
FEATURE_NAME = "deepcache_feature_{}"


def branch_position(branch: int) -> tuple[int, int]:
    """DeepCache's ``cache_branch_id`` as (block, layer): ``set_params(cache_branch_id=K)``."""
    return branch // 3, branch % 3


@dataclass(frozen=True)
class _Units:
    """The layer counts of the UNet's blocks, read from its node names."""

    down_layers: dict[int, int]  # down block -> resnets
    up_layers: dict[int, int]  # up block (forward index) -> resnets

    @classmethod
    def of(cls, paths: list[str]) -> _Units:
        down: dict[int, set[int]] = {}
        up: dict[int, set[int]] = {}
        for path in paths:
            match = re.match(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)", path)
            if match:
                table = down if match.group(1) == "down" else up
                table.setdefault(int(match.group(2)), set()).add(int(match.group(3)))
        return cls({b: len(s) for b, s in down.items()}, {b: len(s) for b, s in up.items()})

    def positions(self, path: str) -> list[tuple[str, int, int]]:
        """The DeepCache units that enclose ``path``, each as (kind, block, layer) in DeepCache's numbering."""
        parts = path.split(".")
        found = []
        if parts[0] == "mid_block":
            found.append(("mid", 0, 0))
        elif parts[0] in ("down_blocks", "up_blocks") and len(parts) > 1 and parts[1].isdigit():
            kind, block = parts[0][: -len("_blocks")], int(parts[1])
            if kind == "down":
                found.append(("down", block, 0))
            else:
                found.append(("up", len(self.up_layers) - block - 1, 0))
            if len(parts) > 3 and parts[3].isdigit():
                layer = int(parts[3])
                if kind == "down":
                    found.append(("down", block, self.down_layers[block] if parts[2] == "downsamplers" else layer))
                else:
                    count = self.up_layers[block]
                    found.append(
                        ("up", len(self.up_layers) - block - 1, 0 if parts[2] == "upsamplers" else count - layer - 1)
                    )
        return found


def _skipped(kind: str, block: int, layer: int, cache_block: int, cache_layer: int) -> bool:
    """DeepCache's ``is_skip_step`` on a step that is not a full one."""
    if kind == "mid" or block > cache_block:
        return True
    if block < cache_block:
        return False
    return layer >= cache_layer if kind == "down" else layer > cache_layer


@dataclass(frozen=True)
class CachePlan:
    """Where one UNet is cut for a cache branch: the features crossing from the skipped part to the shallow path."""

    model: Any  # the UNet's ov.Model
    branch: int
    features: tuple[tuple[Any, int], ...]  # (node, output index) of each feature, in the order of the extra outputs

    @classmethod
    def of(cls, model: Any, branch: int = 0) -> CachePlan:
        if not isinstance(branch, int) or isinstance(branch, bool) or branch < 0:
            raise ConfigError(f"cache branch {branch!r} must be a whole number >= 0")
        ops = model.get_ordered_ops()
        paths = {op.get_friendly_name(): _path(op) for op in ops}
        units = _Units.of([p for p in paths.values() if p])
        cache_block, cache_layer = branch_position(branch)
        if not units.down_layers or not units.up_layers:
            raise ConfigError(
                "this UNet's IR does not name its nodes after diffusers' layers (exported by another tool?), so "
                "feature reuse cannot find its cut: run with --cache-interval 1, or convert the model with ov-sdxl"
            )
        if cache_block >= len(units.down_layers):
            raise ConfigError(
                f"cache branch {branch} is past this UNet's {len(units.down_layers)} down blocks "
                f"(3 branches per block: 0 to {3 * len(units.down_layers) - 1})"
            )

        def skipped(op: Any) -> bool:
            path = paths[op.get_friendly_name()]
            return bool(path) and any(_skipped(*unit, cache_block, cache_layer) for unit in units.positions(path))

        noisy = _reads_sample(ops)
        features: dict[tuple[str, int], tuple[Any, int]] = {}
        seen: set[str] = set()
        stack = [result.input_value(0).get_node() for result in model.get_results()]
        while stack:
            op = stack.pop()
            if op.get_friendly_name() in seen:
                continue
            seen.add(op.get_friendly_name())
            for value in op.input_values():
                source = value.get_node()
                if skipped(source) and source.get_friendly_name() in noisy:
                    features.setdefault((source.get_friendly_name(), value.get_index()), (source, value.get_index()))
                else:
                    stack.append(source)
        if not features:
            raise ConfigError(f"cache branch {branch} skips nothing in this UNet: feature reuse would not save work")
        return cls(model, branch, tuple(features[key] for key in sorted(features)))

    def full_model(self) -> Any:
        """The UNet with each feature as an extra output, after ``out_sample``."""
        import openvino as ov

        clone = self.model.clone()
        by_name = {op.get_friendly_name(): op for op in clone.get_ordered_ops()}
        outputs = [r.output(0) for r in clone.get_results()]
        for index, (node, port) in enumerate(self.features):
            output = by_name[node.get_friendly_name()].output(port)
            output.get_tensor().set_names({FEATURE_NAME.format(index)})
            outputs.append(output)
        return ov.Model(outputs, clone.get_parameters(), f"{self.model.get_friendly_name()}_deepcache_full")

    def shallow_model(self) -> Any:
        """The shallow path alone: the UNet's inputs it still reads, then each feature as an input."""
        import openvino as ov
        import openvino.opset13 as ops

        replaced: dict[tuple[str, int], Any] = {}
        for index, (node, port) in enumerate(self.features):
            output = node.output(port)
            parameter = ops.parameter(
                output.get_partial_shape(), output.get_element_type(), FEATURE_NAME.format(index)
            )
            parameter.output(0).get_tensor().set_names({FEATURE_NAME.format(index)})
            replaced[(node.get_friendly_name(), port)] = parameter
        return _rebuild(self.model, replaced, ov)


def _path(op: Any) -> str:
    match = _PATH.match(op.get_friendly_name())
    return match.group(1) if match else ""


def _reads_sample(ops: list[Any]) -> set[str]:
    """Names of the nodes whose value depends on the noisy ``sample``: only those are features. A skipped node that
    depends on the conditioning alone (the time embedding's SiLU, which tracing merges into the first resnet that
    computes it) is recomputed on the shallow path, as each PyTorch layer computes it afresh."""
    noisy: set[str] = set()
    for op in ops:  # topological order
        if op.get_type_name() in ("ShapeOf", "Constant"):  # a shape is no value of the sample (batch size)
            continue
        is_sample = op.get_type_name() == "Parameter" and op.output(0).get_any_name() == "sample"
        if is_sample or any(v.get_node().get_friendly_name() in noisy for v in op.input_values()):
            noisy.add(op.get_friendly_name())
    return noisy


def _rebuild(model: Any, replaced: dict[tuple[str, int], Any], ov: Any) -> Any:
    """A copy of ``model`` in which each replaced output is read from its new Parameter instead."""
    clone = model.clone()
    by_name = {op.get_friendly_name(): op for op in clone.get_ordered_ops()}
    for (name, port), parameter in replaced.items():
        for target in by_name[name].output(port).get_target_inputs():
            target.replace_source_output(parameter.output(0))
    results = clone.get_results()
    reachable = set()
    stack = [r.input_value(0).get_node() for r in results]
    while stack:
        op = stack.pop()
        if op.get_friendly_name() in reachable:
            continue
        reachable.add(op.get_friendly_name())
        stack.extend(v.get_node() for v in op.input_values())
    inputs = [p for p in clone.get_parameters() if p.get_friendly_name() in reachable]
    return ov.Model(results, inputs + list(replaced.values()), f"{model.get_friendly_name()}_deepcache_shallow")


class _CachedSteps:
    """One pipeline call's UNet request: DeepCache's step rule over a full and a shallow compiled model.

    It stands in for the UNet part's compiled model (``part.request``), which optimum's ``OVModelUnet.forward``
    calls with the named inputs of each step, so whatever wraps ``forward`` (timers, counters) still sees every
    call."""

    def __init__(self, full: Any, shallow: Any, scheduler: Any, interval: int):
        self.full, self.shallow, self.scheduler, self.interval = full, shallow, scheduler, interval
        self.start: int | None = None
        self.features: list[Any] = []
        self.full_steps = self.shallow_steps = 0

    def __call__(self, inputs: dict[str, Any], **_: Any) -> Any:
        import numpy as np

        timestep = float(inputs["timestep"].reshape(-1)[0])
        index = int((self.scheduler.timesteps == timestep).nonzero()[0])  # DeepCache: timesteps.index(t)
        self.start = index if self.start is None else self.start
        if (index - self.start) % self.interval == 0 or not self.features:
            outputs = self.full(_fed(self.full, inputs))
            self.features = [np.array(outputs[i]) for i in range(1, len(self.full.outputs))]
            self.full_steps += 1
            return outputs
        batch = inputs["sample"].shape[0]
        features = [f[-batch:] if f.shape[0] != batch else f for f in self.features]  # guidance stopped: the
        fed = {**_fed(self.shallow, inputs), **{FEATURE_NAME.format(i): f for i, f in enumerate(features)}}
        self.shallow_steps += 1  # conditional half, which diffusers puts second
        return self.shallow(fed)


def _fed(compiled: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs that ``compiled`` takes (the shallow model reads fewer than the UNet)."""
    wanted = {port.get_any_name() for port in compiled.inputs}
    return {name: value for name, value in inputs.items() if name in wanted}


class FeatureCache:
    """The full and shallow models of each UNet this runtime caches features for, compiled once per shape."""

    def __init__(self, device: str, ov_config: dict[str, str]):
        self.device, self.ov_config = device, ov_config
        self._compiled: dict[int, tuple[tuple, int, Any, Any]] = {}  # id(part) -> (shapes, branch, full, shallow)
        self.last: _CachedSteps | None = None  # the last call's steps (how many ran full and shallow)
        self._fresh: set[int] = set()  # parts whose models have not run yet

    def compiled(self, part: Any, branch: int) -> tuple[Any, Any]:
        """``part``'s full and shallow models for its current shape, compiled (from the cache folder if there)."""
        import openvino as ov

        shapes = tuple(str(port.get_partial_shape()) for port in part.model.inputs)
        held = self._compiled.get(id(part))
        if held is None or held[:2] != (shapes, branch):
            self._compiled.pop(id(part), None)  # the old shape's models go before the new ones are made
            part.clear_requests()  # the exact path's compiled UNet is not needed while features are reused
            plan = CachePlan.of(part.model, branch)
            log.debug("compiling the feature-reuse UNets (branch %d, %d feature(s))", branch, len(plan.features))
            core = ov.Core()
            with self._releasing(part):
                full = core.compile_model(plan.full_model(), self.device, self.ov_config)
                shallow = core.compile_model(plan.shallow_model(), self.device, self.ov_config)
            self._compiled[id(part)] = (shapes, branch, full, shallow)
            self._fresh.add(id(part))
        return self._compiled[id(part)][2:]

    def call(self, part: Any, scheduler: Any, interval: int, branch: int) -> Any:
        """Around one pipeline call: features reused when ``interval`` > 1; else the exact path, with ``part``'s
        feature-reuse models freed (the exact UNet compiles again in their place)."""
        if interval > 1:
            return self.running(part, scheduler, interval, branch)
        self.forget(part)
        return contextlib.nullcontext()

    def forget(self, part: Any) -> None:
        """Drop ``part``'s feature-reuse models, so that their memory goes back."""
        self._compiled.pop(id(part), None)

    @contextlib.contextmanager
    def running(self, part: Any, scheduler: Any, interval: int, branch: int) -> Iterator[None]:
        """While the block runs, calls of ``part`` (a pipeline's UNet) reuse features every ``interval`` steps."""
        full, shallow = self.compiled(part, branch)
        self.last = steps = _CachedSteps(full, shallow, scheduler, interval)
        first = id(part) in self._fresh  # the plugin lays the weights out at the first call: give pages back then too
        self._fresh.discard(id(part))
        previous, part.request = part.request, steps
        try:
            with self._releasing(part) if first else contextlib.nullcontext():
                yield
        finally:
            part.request = previous
            steps.full = steps.shallow = None  # ``last`` keeps the counts, not the models or the features
            steps.features = []

    def _releasing(self, part: Any) -> Any:
        """Give back the pages of the IR and the compiled-model cache that compiling and the first call read
        (the plugin keeps its own copy of the weights), as pipelines.py does for the exact path."""
        from ov_sdxl.page_release import ReleaseMappedPages

        cache = self.ov_config.get("CACHE_DIR")
        weights = Path(part.model_save_dir) / "openvino_model.bin"
        return ReleaseMappedPages([weights], [Path(cache)] if cache else [])
