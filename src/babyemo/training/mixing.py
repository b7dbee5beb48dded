"""``--mixup`` and ``--cutmix``: mix the images of a training batch and their targets.

MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization") blends each image
with the next one of the batch, ``lam x_i + (1 - lam) x_{i-1}`` with ``lam ~ Beta(alpha,
alpha)``; CutMix (Yun et al. 2019) pastes a rectangle of the next image, ``lam`` then being
the share of the image kept. Both are torchvision's (``transforms.v2.MixUp`` / ``CutMix``,
one of them per batch by ``RandomChoice`` when both are on); their targets are mixed with
the same ``lam``. The targets given are any ``(N, D)`` per-image rows (see
:meth:`babyemo.training.distill.SoftTargetLoss.pack`: one-hot labels, a "labelled" mass and
the teacher's probabilities side by side), so labels and teacher targets are mixed the
same way, in one call.
"""

from __future__ import annotations

import torch


class BatchMix:
    """MixUp and/or CutMix of a batch (torchvision), with its targets mixed alike.

    Args:
        mixup: ``alpha`` of MixUp's Beta distribution (0: no MixUp).
        cutmix: ``alpha`` of CutMix's Beta distribution (0: no CutMix).

    Raises:
        ValueError: Both are 0 (nothing to mix; the caller makes no :class:`BatchMix`).
    """

    def __init__(self, mixup: float = 0.0, cutmix: float = 0.0) -> None:
        from torchvision.transforms import v2

        choices: list[v2.Transform] = []
        if mixup > 0:
            choices.append(v2.MixUp(alpha=mixup))
        if cutmix > 0:
            choices.append(v2.CutMix(alpha=cutmix))
        if not choices:
            raise ValueError("BatchMix needs mixup > 0 or cutmix > 0")
        self.transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch; each image's partner is the previous one (``roll(1)``; the loader
        shuffles).

        Args:
            images: ``(N, C, H, W) float32`` normalised images, on any device.
            targets: ``(N, D) float32`` per-image target rows (probabilities or masses).

        Returns:
            The mixed images ``(N, C, H, W)`` and targets ``(N, D)``, ``lam`` and the
            partner drawn from torch's generator (seeded per epoch by the training loop).
        """
        return self.transform(images, targets)

    def __repr__(self) -> str:
        return f"BatchMix({self.transform!r})"
