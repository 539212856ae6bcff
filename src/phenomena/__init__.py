"""Learning Dynamics, Reproduced: the thin shared package behind the book's chapters.

Chapters start with :func:`phenomena.setup` and end with ``run.finish()``; models, data,
metrics and closed forms live in the sub-packages.
"""

__version__ = "0.1.0"

from .claims import Claim, ClaimsFailed, Report  # noqa: E402
from .run import Run, setup  # noqa: E402
from .scales import SCALES  # noqa: E402
from .ensemble import DivergenceError  # noqa: E402

__all__ = ["setup", "Run", "Claim", "ClaimsFailed", "Report", "SCALES", "DivergenceError", "__version__"]
