"""The lab: experiments that train, compare, explain and tune, recorded as plain files.

Its rooms, each a subpackage whose ``__init__`` says what it offers (imports point from
later rooms to earlier ones, never back):

- :mod:`lrlab.lab.records`: the on-disk contract between training and reports (run
  directories, their files, the divergence record, a comparison's plan file);
- :mod:`lrlab.lab.data`: datasets as tensors in memory, and targets;
- :mod:`lrlab.lab.models`: LeNet, the MLP, the transformer;
- :mod:`lrlab.lab.train`: one run (config, parts, the trainer, the vectorised trainer,
  ``--lr auto``);
- :mod:`lrlab.lab.report`: statistics over seeds and the report of a comparison;
- :mod:`lrlab.lab.compare`: plans of many runs, their runners, ``compare(...)``;
- :mod:`lrlab.lab.tune`: Optuna studies over train settings.

The flat module paths of lrlab 0.1 (``lrlab.lab.trainer``, ``lrlab.lab.plan``, ...) still
import, with a ``DeprecationWarning`` (:mod:`lrlab.moved`).
"""

from lrlab import moved

moved.install()
