"""Watching a run: the optimizer's own statistics, the scheduled learning rate, skipped steps and
your scalars (loss, accuracy), every k steps, to TensorBoard and/or CSV.

    logger = adaptopt.monitor.Logger(opt, every=10, logdir="runs/mlp", csv="runs/mlp.csv")
    for step in range(steps):
        ...
        opt.step(grads)
        logger.log(loss=loss, accuracy=acc)      # after each step
    logger.close()

Per param group i, a logged step records ``grad_norm``, ``update_rms``, ``lr_min``, ``lr_mean``
and ``lr_max`` (the effective per-element learning rate: the factor of g in the update) from
``opt.last_stats``, and ``lr`` (the group's learning rate as scheduled for that step); plus
``skipped_steps``, ``grad_norm`` (the global norm, when clipping or the guard is on) and every
scalar passed to ``log``. The statistics are computed in the update pass itself, and only for the
steps that are logged: the logger switches ``opt.track_stats`` on for those steps and off for
the others (unless it was on already), so logging every 10 steps costs little (measured:
bench/monitor_overhead.py).

TensorBoard event files are written through ``tensorboardX`` (``pip install
'adaptopt[monitor]'``), or through any object with ``add_scalar(tag, value, step)`` passed as
``writer`` (torch.utils.tensorboard's SummaryWriter, say). CSV rows have one column per value
(``group0/grad_norm``, ...), fixed by the first logged step.
"""

from __future__ import annotations

import csv as _csv
import math
import numbers
import os
from typing import Any, Dict, List, Optional, Union

__all__ = ["Logger"]

STATS = ("grad_norm", "update_rms", "lr_min", "lr_mean", "lr_max")


class Logger:
    def __init__(self, optimizer: Any, *, every: int = 10, logdir: Optional[str] = None, writer: Any = None,
                 csv: Optional[Union[str, "os.PathLike[str]"]] = None):
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if logdir is not None and writer is not None:
            raise ValueError("give logdir (a tensorboardX SummaryWriter is made) or writer, not both")
        if logdir is not None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise ImportError("adaptopt.monitor writes TensorBoard files through tensorboardX: "
                                  "pip install 'adaptopt[monitor]' (or pass writer=any SummaryWriter)") from None
            writer = SummaryWriter(logdir)
            self._own_writer = True
            # One event per logged step carrying every scalar: a tenth of the cost of an
            # add_scalar call per value (~100 us each with tensorboardX 2.6 here).
            from tensorboardX.proto.summary_pb2 import Summary

            self._summary = Summary
        else:
            self._own_writer = False
        if writer is not None and not callable(getattr(writer, "add_scalar", None)):
            raise TypeError("writer: expected an object with add_scalar(tag, value, step)")
        self.optimizer = optimizer
        self.every = int(every)
        self.writer = writer
        if not self._own_writer:
            self._summary = None
        self.step = 0  # calls of log(): the training step being logged
        self._csv_file = open(csv, "w", newline="") if csv is not None else None
        self._csv: Any = None
        self._columns: List[str] = []
        self._always = bool(optimizer.track_stats)
        self._arm()

    def _arm(self) -> None:
        """Statistics for the next step only if it will be logged."""
        if not self._always:
            self.optimizer.track_stats = self.step % self.every == 0

    def values(self, **scalars: float) -> Dict[str, float]:
        """What a logged step records (see the module docstring), as a flat dict."""
        opt = self.optimizer
        out: Dict[str, float] = {}
        for name, v in scalars.items():
            out[name] = float(v)
        stats = opt.last_stats or []
        for i, group in enumerate(opt.param_groups):
            lr = group["lr"]
            if callable(lr):  # the lr this step used: the schedule at the count before it
                lr = lr(max(opt._step_count - 1, 0))
            out[f"group{i}/lr"] = float(lr)
            if i < len(stats):
                for k in STATS:
                    v = stats[i][k]
                    out[f"group{i}/{k}"] = float("nan") if v is None else float(v)
        out["skipped_steps"] = float(opt.skipped_steps)
        if opt.last_grad_norm is not None:
            out["grad_norm"] = float(opt.last_grad_norm)
        return out

    def log(self, **scalars: float) -> Optional[Dict[str, float]]:
        """Call after each optimizer step; every ``every`` steps it writes what that step did and
        returns it (else None)."""
        row = None
        if self.step % self.every == 0:
            row = self.values(**scalars)
            if self._summary is not None:
                S = self._summary
                self.writer._get_file_writer().add_summary(
                    S(value=[S.Value(tag=tag, simple_value=v) for tag, v in row.items()]), self.step)
            elif self.writer is not None:
                for tag, v in row.items():
                    self.writer.add_scalar(tag, v, self.step)
            if self._csv_file is not None:
                self._write_csv(row)
        self.step += 1
        self._arm()
        return row

    def _write_csv(self, row: Dict[str, float]) -> None:
        if self._csv is None:
            self._columns = ["step", *row]
            self._csv = _csv.writer(self._csv_file)
            self._csv.writerow(self._columns)
        extra = set(row) - set(self._columns)
        if extra:
            raise ValueError(f"csv: {sorted(extra)} were not logged at the first step, whose values fixed the "
                             "columns; log every scalar from the start")
        self._csv.writerow([self.step, *(_fmt(row.get(c, math.nan)) for c in self._columns[1:])])
        self._csv_file.flush()

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self.writer is not None:
            flush = getattr(self.writer, "flush", None)
            if callable(flush):
                flush()
            if self._own_writer:
                self.writer.close()
        if not self._always:
            self.optimizer.track_stats = False

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fmt(v: float) -> str:
    return repr(float(v))
