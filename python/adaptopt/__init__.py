"""adaptopt: fused SIMD + multi-threaded CPU kernels for RMSProp, AdaGrad, Adadelta and Adam/AdamW,
applied in place to NumPy arrays, behind a torch.optim-like API."""

from . import _core, _threadpool, functional, schedules
from .optim import SGD, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop, SparseRows

__version__ = _core.__version__
_threadpool.register()  # threadpoolctl sees and limits adaptopt's pool

__all__ = [
    "Optimizer", "RMSprop", "Adagrad", "Adadelta", "Adam", "AdamW", "SGD", "SparseRows",
    "functional", "schedules",
    "isa", "available_isas", "set_isa", "get_num_threads", "set_num_threads", "__version__",
]


def isa() -> str:
    """Name of the kernel ISA in use: 'scalar', 'avx2' or 'avx512'."""
    return _core.isa()


def available_isas() -> "list[str]":
    """ISAs this CPU and OS support, lowest first; ADAPTOPT_ISA or set_isa() picks among them."""
    return list(_core.available_isas())


def set_isa(name: str) -> None:
    """Selects the kernel ISA for this process. ValueError for an unknown name, RuntimeError
    for one this CPU lacks."""
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str, got {type(name).__name__}")
    _core.set_isa(name)


def get_num_threads() -> int:
    """Threads used for large steps (default: the CPUs this process may run on, or
    OMP_NUM_THREADS when set). ``threadpoolctl.threadpool_limits`` limits it too."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the number of threads for large steps; results do not depend on it."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}: {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _core.set_num_threads(n)
