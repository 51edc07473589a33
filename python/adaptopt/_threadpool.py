"""threadpoolctl support: adaptopt's thread pool shows in ``threadpool_info()`` and is limited by
``threadpool_limits()`` like OpenBLAS's and OpenMP's (``threadpool_limits(1)`` runs adaptopt's
steps on one thread too). threadpoolctl finds ``_core`` among the loaded shared libraries by its
file name and calls the C functions it exports (``adaptopt_get_num_threads`` and
``adaptopt_set_num_threads``, in cpp/src/parallel.cpp) through ctypes."""

from __future__ import annotations

import ctypes


def register() -> bool:
    """Registers the controller with threadpoolctl (once); False without threadpoolctl >= 3.6."""
    try:
        import threadpoolctl
    except ImportError:
        return False
    base = getattr(threadpoolctl, "LibController", None)
    add = getattr(threadpoolctl, "register", None)
    if base is None or add is None:
        return False
    if any(getattr(c, "internal_api", None) == "adaptopt"
           for c in getattr(threadpoolctl, "_ALL_CONTROLLERS", ())):
        return True

    class AdaptoptController(base):
        """adaptopt's pool: the thread count of large steps (adaptopt.set_num_threads)."""

        user_api = "adaptopt"
        internal_api = "adaptopt"
        filename_prefixes = ("_core",)
        # Other packages' _core modules lack these and are left alone.
        check_symbols = ("adaptopt_get_num_threads", "adaptopt_set_num_threads")

        def get_num_threads(self):
            fn = getattr(self.dynlib, "adaptopt_get_num_threads", None)
            return None if fn is None else int(fn())

        def set_num_threads(self, num_threads):
            fn = getattr(self.dynlib, "adaptopt_set_num_threads", None)
            if fn is not None:
                fn(ctypes.c_int(max(1, int(num_threads))))

        def get_version(self):
            fn = getattr(self.dynlib, "adaptopt_version", None)
            if fn is None:
                return None
            fn.restype = ctypes.c_char_p
            return fn().decode()

    add(AdaptoptController)
    return True
