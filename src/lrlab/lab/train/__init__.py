"""One run: its config, its parts (data, model, device, optimizer factory), the trainer
and the vectorised trainer of many runs at once, and the LR range test behind ``--lr auto``.
"""

from __future__ import annotations

