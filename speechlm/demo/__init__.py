"""The Gradio demo: text-to-speech with streaming playback, and a voice chat. Everything goes through ``Pipeline``.

    speechlm demo --model DIR            # or: make demo; python demo/app.py --model DIR
    DemoApp(Pipeline.from_pretrained(DIR), DemoConfig()).launch()      # speechlm.demo.app, .config

The handlers and the layout are in ``app.py``, the reply makers in ``responders.py``, the options in
``config.py`` (and ``configs/demo/default.yaml``).
"""

from __future__ import annotations

import signal
import time


def serve(cfg) -> int:
    """``speechlm demo``: load the pipeline (its own clear error if there is none), then serve until stopped.

    The pipeline is loaded before Gradio is imported, so a wrong ``--model`` fails in a moment.
    """
    import torch

    from speechlm.demo.config import check
    from speechlm.inference import Pipeline

    check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pipeline = Pipeline.from_pretrained(cfg.model)

    from speechlm.demo.app import DemoApp

    app = DemoApp(pipeline, cfg)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does: server closed, temp files removed
    url = app.launch()
    print(f"speechlm demo: {pipeline!r}\nreplies by {app.responder.name}\nserving on {url}"
          + (f" and, publicly, on {app.blocks.share_url}" if app.blocks.share_url else "") + " (Ctrl-C stops it)",
          flush=True)
    try:
        while app.blocks.is_running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the demo", flush=True)
    finally:
        app.close()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
