"""The demo wing: the Gradio app in the browser, on one runtime built beforehand.

    from ov_sdxl.demo import build_demo, launch_demo
    demo = build_demo(runtime)              # a gr.Blocks; runtime: an SDXLRuntime
    launch_demo(demo, port=7860)            # or: ov-sdxl demo --model models/sdxl
    run_demo(runtime, announce=print)       # as the command runs it: serves until stopped, then deletes its files

- ``app``: the layout and its events; ``handlers``: what each event does (``live``: the Generate stream, ``runs``:
  the runs in flight, ``labels``: the runtime's keys in the user's words); ``inputs``: form values to
  ``GenerationParams``, and the demo's limits; ``session``: the command's run, its folder and its stop signals.
  It uses the runtime's public API only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ov_sdxl.exports import lazy_exports

if TYPE_CHECKING:
    from ov_sdxl.demo.app import build_demo, launch_demo
    from ov_sdxl.demo.inputs import TINY_NOTICE, DemoLimits
    from ov_sdxl.demo.session import run_demo

__getattr__ = lazy_exports(
    __name__,
    {
        "DemoLimits": "ov_sdxl.demo.inputs",
        "TINY_NOTICE": "ov_sdxl.demo.inputs",
        "build_demo": "ov_sdxl.demo.app",
        "launch_demo": "ov_sdxl.demo.app",
        "run_demo": "ov_sdxl.demo.session",
    },
)
__all__ = ["DemoLimits", "TINY_NOTICE", "build_demo", "launch_demo", "run_demo"]
