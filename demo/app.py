"""Start the Gradio demo from a checkout: the same as `speechlm demo` (options in demo/README.md).

    python demo/app.py --model DIR [-c configs/demo/default.yaml] [--port 7860]
"""

import sys

from speechlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
