"""adaptopt: fused SIMD, multi-threaded CPU kernels for the adaptive-learning-rate optimizers and
SGD, applied in place to NumPy arrays, behind a torch.optim-like API. The optimizer classes are
listed in ``adaptopt.optim.__all__``; each is a rule of the registry in ``adaptopt._rules``."""

from . import _core, _threadpool
from . import functional, schedules
from . import optim
from .optim import *  # noqa: F401,F403  (the optimizer classes)
from .sparse import SparseRows

__version__ = _core.__version__
_core.set_sparse_rows_type(SparseRows)
_threadpool.register()  # threadpoolctl sees and limits adaptopt's pool

__all__ = [
    "SparseRows", "functional", "schedules",
    "isa", "available_isas", "set_isa", "get_num_threads", "set_num_threads", "__version__",
]
__all__ += optim.__all__


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
