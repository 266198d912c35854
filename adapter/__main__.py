"""`python -m torch_visualization summary LOGDIR`: see `torch_visualization.cli`."""

import sys

from torch_visualization.cli import main

if __name__ == "__main__":
    sys.exit(main())
