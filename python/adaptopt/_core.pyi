"""
adaptopt native core: fused SIMD optimizer kernels and their rule registry
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['FLAGS', 'Group', 'Hyper', 'MAX_SLOTS', 'Plan', 'Probe', 'Q8_BLOCK', 'RuleInfo', 'StepStats', 'StepStatus', 'available_isas', 'commit', 'find_overlap', 'get_num_threads', 'isa', 'multi_step', 'parallel_threshold', 'q8_decode', 'q8_encode', 'rules', 'set_bfloat16_dtype', 'set_isa', 'set_num_threads', 'set_parallel_threshold', 'set_sparse_rows_type']
class RuleInfo:
    """
    One update rule as the native core defines it.
    """
    @property
    def eager_state(self) -> bool:
        """
        State is created at construction (torch's Adagrad).
        """
    @property
    def fields(self) -> list[str]:
        """
        Named hyperparameters besides lr and weight_decay, in Hyper order.
        """
    @property
    def flags(self) -> list[str]:
        """
        Option flags the rule accepts.
        """
    @property
    def id(self) -> int:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def slots(self) -> list[str]:
        """
        State buffers (torch's names), in slot order.
        """
    @property
    def state(self) -> list[tuple[str, float]]:
        """
        Per-parameter scalar state: (name, initial value).
        """
    @property
    def unsigned_slots(self) -> list[bool]:
        """
        Per slot: never negative (its 8-bit code has no sign).
        """
class StepStatus:
    """
    What a step did.
    
    Members:
    
      nothing : no parameter had a gradient
    
      applied
    
      skipped : skipped: a gradient was not finite
    """
    __members__: typing.ClassVar[dict[str, StepStatus]]
    applied: typing.ClassVar[StepStatus]
    nothing: typing.ClassVar[StepStatus]
    skipped: typing.ClassVar[StepStatus]
    @typing.overload
    def __eq__(self, other: StepStatus) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: StepStatus) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class StepStats:
    """
    Statistics of one param group's update, from the update pass.
    """
    @property
    def count(self) -> int:
        """
        elements updated
        """
    @property
    def grad_sq(self) -> float:
        """
        sum of squared gradients (as given)
        """
    @property
    def lr_max(self) -> float:
        ...
    @property
    def lr_min(self) -> float:
        ...
    @property
    def lr_sum(self) -> float:
        """
        sum of the effective per-element learning rates
        """
    @property
    def update_sq(self) -> float:
        """
        sum of squared applied updates
        """
class Hyper:
    """
    The validated hyperparameters of one param group, packed for the kernels.
    """
    def __init__(self, rule: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, flags: typing.SupportsInt | typing.SupportsIndex, params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
    @property
    def lr(self) -> float:
        ...
    @property
    def needed(self) -> list[bool]:
        """
        Per slot: does an update with these hyperparameters read and write it?
        """
    @property
    def params(self) -> list[float]:
        ...
    @property
    def rule(self) -> int:
        ...
    @property
    def slot_init(self) -> list[float]:
        """
        Per slot: the value a new buffer starts at.
        """
class Group:
    def __init__(self, rule: typing.SupportsInt | typing.SupportsIndex, params: list, states: list, steps: numpy.ndarray, rule_state: typing.Any = None, param_label: str = 'params', first_index: typing.SupportsInt | typing.SupportsIndex = 0, slot_labels: typing.Any = None, fresh: typing.Any = None, state_kind: typing.SupportsInt | typing.SupportsIndex = 0, mode: typing.SupportsInt | typing.SupportsIndex = 0, masters: typing.Any = None, seed: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def __len__(self) -> int:
        ...
    def arrays(self, i: typing.SupportsInt | typing.SupportsIndex) -> list:
        """
        [param, slot 0 or None, ...] of param i.
        """
class Plan:
    """
    A step planned once, checked each time with pointer comparisons.
    """
    def __init__(self, entries: list, counts: numpy.ndarray) -> None:
        ...
    def step(self, grads: typing.Any, max_norm: typing.SupportsFloat | typing.SupportsIndex, skip_nonfinite: bool, want_stats: bool) -> typing.Any:
        """
        multi_step's result, or None (nothing done) when a group, its params or a planned value changed.
        """
class Probe:
    """
    The bandwidth probe: one pass over p, g and the state arrays per run().
    """
    def __init__(self, p: numpy.ndarray, g: numpy.ndarray, states: list, state_kind: typing.SupportsInt | typing.SupportsIndex = 0, master: typing.Any = None) -> None:
        ...
    def run(self) -> None:
        ...
def available_isas() -> list[str]:
    """
    ISAs usable on this CPU and OS, lowest first.
    """
def commit(ops: list) -> None:
    """
    Apply ('setattr', obj, name, value), ('replace', dict, mapping) and ('copyto', dst, src)
    operations all at once (all checked first), with no Python code running in between.
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
def multi_step(groups: collections.abc.Sequence[Group], hypers: collections.abc.Sequence[Hyper], grads: typing.Any, max_norm: typing.SupportsFloat | typing.SupportsIndex = -1.0, skip_nonfinite: bool = False, want_norm: bool = False, want_stats: bool = False, counts: typing.Any = None, on_apply: typing.Any = None, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> tuple:
    """
    Validate every gradient, then update every group in one parallel region with the GIL released.
    max_norm >= 0 clips by the global gradient norm (of the gradients as given). grad_scale multiplies
    every gradient inside the kernels (with the clipping coefficient; statistics see the gradients as
    given). Returns (norm or None, StepStatus, list of
    StepStats per group or None). counts (int64[2]: applied, skipped steps) and on_apply ((object,
    name, value) set when the step applies) are updated inside the call, atomically with the step.
    """
def parallel_threshold() -> int:
    ...
def q8_decode(codes: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], absmax: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], unsigned: bool) -> numpy.typing.NDArray[numpy.float32]:
    """
    float32 values of 8-bit codes.
    """
def q8_encode(values: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], unsigned: bool) -> tuple[numpy.typing.NDArray[numpy.uint8], numpy.typing.NDArray[numpy.float32]]:
    """
    8-bit codes (same shape) and absmax per block of float32 values (a copy is encoded).
    """
def rules() -> list[RuleInfo]:
    """
    Every update rule, in id order.
    """
def set_bfloat16_dtype(dtype: numpy.dtype[typing.Any]) -> None:
    """
    Registers ml_dtypes.bfloat16's NumPy dtype as the bfloat16 storage type.
    """
def set_isa(name: str) -> None:
    """
    Select the kernel ISA (must be in available_isas()).
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def set_parallel_threshold(elements: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def set_sparse_rows_type(type: typing.Any) -> None:
    """
    The class of sparse-row gradients; only its instances are taken as (indices, values).
    """
FLAGS: dict = {'maximize': 1, 'decoupled_weight_decay': 2, 'centered': 4, 'nesterov': 8, 'eps_in_sqrt': 16, 'amsgrad': 32, 'bias_correction': 64}
MAX_SLOTS: int = 3
Q8_BLOCK: int = 256
__version__: str = '0.1.0'
