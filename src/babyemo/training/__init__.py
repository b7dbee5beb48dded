"""Train a registered architecture on a prepared dataset: ``train(TrainConfig) -> TrainResult``.

One epoch = one pass over the ``train`` split with augmentation, then an evaluation of the
``val`` split. Every epoch writes ``metrics.csv``, ``curves.png`` and ``last.pt`` (with the
optimizer state for ``--resume``); ``best.pt`` is the epoch with the best validation
macro-F1. At the end, temperature scaling is fitted on the ``val`` split with ``best.pt``'s
weights and stored in ``best.pt`` (:mod:`babyemo.calibration`). The ``test`` split is never
read here.

Determinism: epoch ``e`` reseeds torch with ``seed + e`` and shuffles with a generator of
the same seed, so a run resumed from ``last.pt`` on the CPU continues exactly as an
uninterrupted run would.

The package, in the order a run goes through it:

* :mod:`~babyemo.training.setup`: everything before the first epoch (run folder, manifest,
  model, datasets, optimizer, schedule, :class:`~babyemo.training.setup.Run`);
* :mod:`~babyemo.training.finetune`: ``--init``, starting from another checkpoint's weights;
* :mod:`~babyemo.training.resume`: ``--resume``, what ``last.pt`` saves and restores;
* :mod:`~babyemo.training.runner`: the training and validation passes over a loader;
* :mod:`~babyemo.training.loop`: :func:`train` and the epoch loop;
* :mod:`~babyemo.training.history`: ``metrics.csv``, ``curves.png``, the epoch summary line;
* :mod:`~babyemo.training.finish`: after the last epoch (calibration, registration).

Cross-validation (``babyemo train --folds K``): :mod:`~babyemo.training.folds` makes the
folds and their manifests, trains each fold with :func:`train` and gets its out-of-fold
logits (:func:`~babyemo.training.folds.run_folds`);
:func:`babyemo.evaluation.crossval.train_folds` scores and writes them.

Multi-task training (``--aux-data``): :mod:`~babyemo.training.multitask` (the auxiliary
head, its batches and checks; the runner runs both tasks in one forward pass).
"""

from babyemo.training.folds import FoldPlan, FoldsRun, assign_folds, run_folds
from babyemo.training.history import HISTORY_FIELDS
from babyemo.training.loop import TrainResult, train
from babyemo.training.resume import RESUME_FREE
from babyemo.training.setup import RUN_FILES, resolve_cache_mode

__all__ = ["HISTORY_FIELDS", "RESUME_FREE", "RUN_FILES", "FoldPlan", "FoldsRun", "TrainResult",
           "assign_folds", "resolve_cache_mode", "run_folds", "train"]
