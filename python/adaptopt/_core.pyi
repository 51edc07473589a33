"""
adaptopt native core: fused SIMD/OpenMP optimizer kernels
"""
from __future__ import annotations
import collections.abc
import numpy
import typing
__all__: list[str] = ['Group', 'Hyper', 'available_isas', 'find_overlap', 'get_num_threads', 'isa', 'multi_step', 'parallel_threshold', 'set_isa', 'set_num_threads', 'set_parallel_threshold']
class Hyper:
    def __init__(self, algo: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, a: typing.SupportsFloat | typing.SupportsIndex, b: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, flags: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def lr(self) -> float:
        ...
class Group:
    def __init__(self, algo: typing.SupportsInt | typing.SupportsIndex, params: list, states: list, steps: numpy.ndarray, param_label: str, first_index: typing.SupportsInt | typing.SupportsIndex, slot_labels: collections.abc.Sequence[str]) -> None:
        ...
    def __len__(self) -> int:
        ...
def available_isas() -> list[str]:
    """
    ISAs usable on this CPU and OS, lowest first.
    """
def find_overlap(arrays: list) -> tuple[int, int] | None:
    """
    Indices (i, j) of two arrays whose memory overlaps, or None.
    """
def get_num_threads() -> int:
    ...
def isa() -> str:
    """
    Name of the active kernel ISA.
    """
def multi_step(groups: collections.abc.Sequence[Group], hypers: collections.abc.Sequence[Hyper], grads: typing.Any, max_norm: typing.SupportsFloat | typing.SupportsIndex = -1.0, skip_nonfinite: bool = False, want_norm: bool = False, want_stats: bool = False) -> tuple:
    """
    Validate every gradient, then update every group in one parallel region with the GIL released.
    max_norm >= 0 clips by the global gradient norm. Returns (norm or None, status, stats or
    None): status 0 = no gradient given, 1 = applied, 2 = skipped because a gradient was not
    finite; stats per group = (sum g^2, sum du^2, sum lr_eff, min lr_eff, max lr_eff, count).
    """
def parallel_threshold() -> int:
    ...
def set_isa(name: str) -> None:
    """
    Select the kernel ISA (must be in available_isas()).
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def set_parallel_threshold(elements: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
__version__: str = '0.1.0'
