"""Load only the compiled module (for CPUs NumPy itself cannot run on) and check that the
dispatcher chose scalar.

Usage: load_core.py SITE_PACKAGES"""

import glob
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("adaptopt._core", glob.glob(sys.argv[1] + "/adaptopt/_core*.so")[0])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
assert m.isa() == "scalar" and m.available_isas() == ["scalar"], (m.isa(), m.available_isas())
print("isa", m.isa())
