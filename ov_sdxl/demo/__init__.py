"""The demo wing: the Gradio app in the browser, on one runtime built beforehand.

    from ov_sdxl.demo import build_demo, launch_demo
    demo = build_demo(runtime)              # a gr.Blocks; runtime: an SDXLRuntime
    launch_demo(demo, port=7860)            # or: ov-sdxl demo --model models/sdxl

- ``app``: the layout and its events; ``handlers``: what each event does; ``inputs``: form values to
  ``GenerationParams``, and the demo's limits. It uses the runtime's public API only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ov_sdxl.exports import lazy_exports

if TYPE_CHECKING:
    from ov_sdxl.demo.app import TINY_NOTICE, build_demo, launch_demo
    from ov_sdxl.demo.inputs import DemoLimits

__getattr__ = lazy_exports(
    __name__,
    {
        "DemoLimits": "ov_sdxl.demo.inputs",
        "TINY_NOTICE": "ov_sdxl.demo.app",
        "build_demo": "ov_sdxl.demo.app",
        "launch_demo": "ov_sdxl.demo.app",
    },
)
__all__ = ["DemoLimits", "TINY_NOTICE", "build_demo", "launch_demo"]
