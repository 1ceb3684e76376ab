"""What explains a run: sharpness (the top Hessian eigenvalue) against the LR's stability edge."""

from lrlab.diagnostics.sharpness import SharpnessResult, sharpness, stability_threshold

__all__ = ["SharpnessResult", "sharpness", "stability_threshold"]
