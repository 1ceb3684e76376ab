"""lrlab: learning-rate warmup, schedules and optimizers for PyTorch, and a lab to compare them."""

from lrlab.errors import LrlabError, SpecError

__version__ = "0.1.0"

__all__ = ["LrlabError", "SpecError", "__version__"]
