"""The passes of an epoch: a DataLoader over a dataset, and :class:`Runner`, which runs
a training pass (forward, loss, backward, optimizer step) or an evaluation pass over it on
one device and precision."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from babyemo import distributed
from babyemo.config import TrainConfig
from babyemo.data.loading.dataset import ManifestDataset
from babyemo.devices import default_num_workers
from babyemo.errors import ConfigError
from babyemo.progress import progress_bar
from babyemo.transforms import normalize


def make_loader(dataset: ManifestDataset | Dataset, config: TrainConfig, device: torch.device,
                *, shuffle: bool, epoch_seed: int = 0,
                sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader over ``dataset`` with ``config``'s batch size and workers.

    Args:
        dataset: The images (with ``--teacher``, a
            :class:`~babyemo.training.distill.DistillDataset`: batches then also carry
            ``(N, K) float32`` teacher logits).
        config: Gives ``batch_size`` and ``num_workers`` (``None``: the device's default).
        device: Pinned memory on CUDA.
        shuffle: Shuffle (training) with a generator seeded ``epoch_seed``, dropping the
            last incomplete batch when there is more than one batch.
        epoch_seed: Seed of the shuffling generator (``seed + epoch``, for resume).
        sampler: Reads the images this sampler gives instead (a process's share of a
            distributed run: ``torch.utils.data.DistributedSampler``, its shuffling seeded
            by itself); with ``shuffle`` the last incomplete batch is dropped as above.

    Returns:
        The loader; batches are ``(N, C, H, W) float32`` images in [0, 1] (normalised on
        the device by :class:`Runner`) and ``(N,) int64`` targets.
    """
    workers = (config.num_workers if config.num_workers is not None else default_num_workers(
        device, processes=distributed.current().local_world_size))
    generator = torch.Generator().manual_seed(epoch_seed) if shuffle and sampler is None else None
    n = len(sampler) if sampler is not None else len(dataset)  # type: ignore[arg-type]
    return DataLoader(dataset, batch_size=config.batch_size,
                      shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, generator=generator,
                      drop_last=shuffle and n > config.batch_size,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` for training and validation passes (``--compile``).

    The compiled wrapper shares its parameters with ``model``, so checkpoints keep saving
    ``model``'s own state dict (no ``_orig_mod.`` prefixes). The first batches are slow
    while it compiles (12-60 s measured on a 2-core CPU).
    """
    return torch.compile(model)


class Runner:
    """Runs training and evaluation passes on one device and precision.

    The default recipe's training step is the plain one (``criterion`` on class indices).
    With ``soft_loss`` (MixUp/CutMix or a teacher), each batch's targets are packed into
    soft rows, mixed with the images by ``mix``, and ``soft_loss`` is used instead; with
    ``ema``, the averaged weights are updated after every optimizer step and the
    evaluation passes run them.

    In a distributed run (:mod:`babyemo.distributed`) ``model`` is the
    ``DistributedDataParallel`` wrapper, which averages the gradients over the processes
    in ``backward``; each process evaluates its own share of the images with ``module``,
    and the training statistics are summed over the processes.

    Args:
        model: The model (or its ``torch.compile`` / ``DistributedDataParallel``
            wrapper), already on ``device``.
        device: Where the passes run.
        plan: The precision plan (:func:`babyemo.devices.resolve_precision`): its
            ``autocast`` context and whether a ``GradScaler`` is needed (CUDA fp16).
        criterion: The loss, on ``(N, num_classes) float32`` logits and ``(N,) int64``
            targets (training with hard labels, and every evaluation pass).
        spec: The input spec whose mean and std normalise each batch on the device.
        soft_loss: A :class:`babyemo.training.distill.SoftTargetLoss` on the device, or
            ``None``.
        mix: A :class:`babyemo.training.mixing.BatchMix`, or ``None`` (needs ``soft_loss``).
        ema: A ``torch.optim.swa_utils.AveragedModel`` of the model, or ``None``.
        module: The model's own module when ``model`` is a wrapper (default ``model``):
            what the EMA averages and, without EMA, what evaluation passes run.
        aux: The auxiliary task of multi-task training
            (:class:`babyemo.training.multitask.AuxTask`), or ``None``: each training batch
            is then run in one forward pass with an auxiliary batch, and the loss is
            ``criterion(main) + aux.weight * aux.criterion(aux)`` (hard labels only).

    Attributes:
        eval_model: What evaluation passes run: the EMA weights (``ema.module``), else
            ``module``.
        scaler: The ``torch.amp.GradScaler`` of fp16 (plan's ``grad_scaler``), or
            ``None``.
    """

    def __init__(self, model: nn.Module, device: torch.device, plan: Any,
                 criterion: nn.Module, spec: Any, *, soft_loss: Any = None, mix: Any = None,
                 ema: Any = None, module: nn.Module | None = None, aux: Any = None) -> None:
        self.model, self.device, self.plan, self.criterion = model, device, plan, criterion
        self.module = module if module is not None else model
        self.spec = spec
        self.channels_last = device.type in ("cpu", "cuda")
        # fp16 gradients underflow without loss scaling (Micikevicius et al. 2018)
        self.scaler = torch.amp.GradScaler(device.type) if plan.grad_scaler else None
        if mix is not None and soft_loss is None:
            raise ValueError("mixing a batch needs a soft-target loss")
        if aux is not None and soft_loss is not None:
            raise ValueError("an auxiliary task trains on hard labels only")
        self.soft_loss, self.mix, self.ema, self.aux = soft_loss, mix, ema, aux
        self.eval_model = ema.module if ema is not None else self.module

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nb = self.device.type == "cuda"
        x = normalize(x.to(self.device, non_blocking=nb), self.spec)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=nb)

    def train_epoch(self, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    description: str,
                    aux_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
                    ) -> dict[str, float]:
        """One training pass over ``loader`` (progress bar titled ``description``).

        Batches are ``(images, labels)``, or ``(images, labels, teacher_logits)`` with a
        teacher (labels -1 for unlabelled images).

        Args:
            loader: The main training batches.
            optimizer: Steps the model's (and the auxiliary head's) parameters.
            description: Title of the progress bar.
            aux_batches: With an auxiliary task, its batches (``(M, C, H, W) uint8``
                pixels like the main batches', ``(M,) int64`` labels; see
                :meth:`babyemo.training.multitask.AuxTask.batches`): the next one joins
                each main batch.

        Returns:
            ``train_loss`` (mean per image of the main task's loss), ``train_acc`` and
            ``n``, the number of main images seen. ``train_acc`` counts the images with a
            label share whose predicted class is their (mixed) target's largest label
            share. With an auxiliary task also ``aux_train_loss`` (its cross entropy, mean
            per auxiliary image) and ``aux_train_acc``.

        Raises:
            ConfigError: The loss is not finite (diverged).
        """
        self.model.train()
        if self.aux is not None:
            if aux_batches is None:
                raise ValueError("a run with an auxiliary task needs its batches")
            self.aux.head.train()
        total_loss, correct, n, n_acc = 0.0, 0, 0, 0
        aux_loss_sum, aux_correct, aux_n = 0.0, 0, 0
        with progress_bar(description, total=len(loader), unit="batch") as bar:
            for x, y, *teacher in loader:
                x, y = self._to_device(x, y)
                optimizer.zero_grad(set_to_none=True)
                has_label = None
                if self.aux is not None:
                    xa, ya = self._to_device(*next(aux_batches))  # type: ignore[arg-type]
                    logits, main_loss, aux_logits, aux_loss = self._multitask_step(x, y, xa, ya)
                    loss = main_loss + self.aux.weight * aux_loss
                    aux_loss_sum += aux_loss.item() * len(ya)
                    aux_correct += (aux_logits.argmax(1) == ya).sum().item()
                    aux_n += len(ya)
                elif self.soft_loss is None:
                    with self.plan.autocast(self.device):
                        logits = self.model(x)
                        loss = self.criterion(logits.float(), y)
                else:
                    x, y, has_label, targets = self._soft_batch(x, y, teacher)
                    with self.plan.autocast(self.device):
                        logits = self.model(x)
                        loss = self.soft_loss(logits.float(), targets)
                if not torch.isfinite(loss):
                    raise ConfigError(f"The training loss became {loss.item()}.",
                                      "lower --lr or use --precision fp32")
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.step(optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.module)
                if self.aux is not None:
                    loss = main_loss  # train_loss: the main task's, as in a plain run
                total_loss += loss.item() * len(y)
                if has_label is None:
                    correct += (logits.argmax(1) == y).sum().item()
                    n_acc += len(y)
                else:
                    correct += ((logits.argmax(1) == y) & has_label).sum().item()
                    n_acc += int(has_label.sum().item())
                n += len(y)
                bar.advance()
        # all processes' images (a no-op in one process)
        total_loss, correct, n, n_acc = distributed.all_reduce_sum(
            torch.tensor([total_loss, correct, n, n_acc], dtype=torch.float64)).tolist()
        stats = {"train_loss": total_loss / max(n, 1), "train_acc": correct / max(n_acc, 1),
                 "n": int(n)}
        if self.aux is not None:
            stats.update(aux_train_loss=aux_loss_sum / max(aux_n, 1),
                         aux_train_acc=aux_correct / max(aux_n, 1))
        return stats

    def _multitask_step(self, x: torch.Tensor, y: torch.Tensor, xa: torch.Tensor,
                        ya: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass of a main batch and an auxiliary batch concatenated.

        Args:
            x: ``(N, C, H, W)`` normalised main images; ``y`` their ``(N,) int64`` labels.
            xa: ``(M, C, H, W)`` normalised auxiliary images; ``ya`` their ``(M,) int64``
                labels.

        Returns:
            The main logits ``(N, K) float32`` (the first ``N`` rows of the model's
            output), the main loss, the auxiliary logits ``(M, K_aux) float32`` (the
            auxiliary head on the features of the last ``M`` rows) and the auxiliary loss.
        """
        both = torch.cat([x, xa])
        if self.channels_last:
            both = both.contiguous(memory_format=torch.channels_last)
        n = len(y)
        with self.plan.autocast(self.device):
            with self.aux.tap.capture() as tap:
                out = self.model(both)
            features = tap.take()
            logits = out[:n].float()
            aux_logits = self.aux.head(features[n:]).float()
            main_loss = self.criterion(logits, y)
            aux_loss = self.aux.criterion(aux_logits, ya)
        return logits, main_loss, aux_logits, aux_loss

    def _soft_batch(self, x: torch.Tensor, y: torch.Tensor, teacher: list[torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pack a batch's soft targets and mix them with its images.

        Returns:
            The images (mixed), the ``(N,) int64`` class of each target's largest label
            share, the ``(N,) bool`` mask of targets with a label share, and the target
            rows (see :class:`babyemo.training.distill.SoftTargetLoss`).
        """
        logits = (teacher[0].to(self.device, non_blocking=self.device.type == "cuda")
                  if teacher else None)
        targets = self.soft_loss.pack(y, logits)
        if self.mix is not None:
            x, targets = self.mix(x, targets)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        hard, has_label = self.soft_loss.hard_targets(targets)
        return x, hard, has_label, targets

    @torch.inference_mode()
    def evaluate(self, loader: DataLoader) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean loss, true labels ``(N,) int64`` and predicted labels ``(N,) int64`` of
        :attr:`eval_model` (the EMA weights with ``ema``) on this process's images."""
        self.eval_model.eval()
        total_loss, trues, preds = 0.0, [], []
        for x, y in loader:
            x, y = self._to_device(x, y)
            with self.plan.autocast(self.device):
                logits = self.eval_model(x).float()
            total_loss += self.criterion(logits, y).item() * len(y)
            trues.append(y.cpu())
            preds.append(logits.argmax(1).cpu())
        if not trues:  # a process whose share of a tiny split is empty
            empty = np.zeros(0, dtype=np.int64)
            return 0.0, empty, empty
        y_true = torch.cat(trues).numpy()
        return total_loss / max(len(y_true), 1), y_true, torch.cat(preds).numpy()
