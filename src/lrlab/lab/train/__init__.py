"""One run: its config (``config``), its parts (``parts``: data, model, device, optimizer
factory; ``device``), its bookkeeping (``session``: set-up, resume, records, checkpoints;
``health``: the divergence and not-learning rules), the two loops that drive a session (the
one-run ``trainer`` and the ``vectorised`` trainer of many runs at once), data parallelism
(``distributed``) and the LR range test behind ``--lr auto`` (``auto_lr``).
"""

from __future__ import annotations
