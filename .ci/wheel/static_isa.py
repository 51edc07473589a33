"""Static ISA hygiene of a build directory: only the AVX2/AVX-512 kernel files get ISA flags,
their objects export only their kernel table, baseline objects hold no VEX/EVEX code.

Usage: static_isa.py BUILD_DIR"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys


def main() -> None:
    build = sys.argv[1]
    problems, notes = [], []
    ISA_FILES = {"isa_avx2": "avx2", "isa_avx512": "avx512"}
    # Flags that let the compiler emit instructions beyond x86-64 (SSE2).
    NON_BASELINE = re.compile(r"(?<!\S)-m(arch=\S+|tune=native|avx\S*|fma\S*|sse3|ssse3|sse4\S*|"
                              r"bmi\S*|f16c|popcnt|lzcnt|movbe|xsave\S*)(?!\S)")
    with open(os.path.join(build, "compile_commands.json")) as f:
        commands = json.load(f)
    for entry in commands:
        src = os.path.basename(entry["file"])
        cmd = entry.get("command") or " ".join(entry["arguments"])
        flags = sorted(set(m.group(0) for m in NON_BASELINE.finditer(cmd)))
        isa = ISA_FILES.get(src.split(".")[0])
        if isa is None and flags:
            problems.append(f"baseline file {src} is compiled with {flags}")
        elif isa == "avx2" and (not {"-mavx2", "-mfma"} <= set(flags) or any("512" in f for f in flags)):
            problems.append(f"{src} flags {flags}: want -mavx2 -mfma and no AVX-512")
        elif isa == "avx512" and "-mavx512f" not in flags:
            problems.append(f"{src} flags {flags}: want -mavx512f")
        notes.append(f"{src}: {' '.join(flags) or 'baseline'}")
    objects = [os.path.join(d, n) for d, _, ns in os.walk(build) for n in ns if n.endswith(".o")]
    nm = shutil.which("gcc-nm") or shutil.which("nm")  # gcc-nm always reads LTO symbol tables
    objdump = shutil.which("objdump")
    for o in objects:
        name = os.path.basename(o)
        isa = ISA_FILES.get(name.split(".")[0])
        if isa is not None:
            # A global or weak symbol outside the ISA's namespace could be merged with a baseline
            # copy of the same inline function (the linker keeps one): only the table getter may be.
            syms = subprocess.run([nm, "-C", "--defined-only", "--extern-only", o], capture_output=True,
                                  text=True, check=True).stdout.splitlines()
            getter = f"adaptopt::kernel_table_{isa}()"
            if not any(s.endswith(getter) for s in syms):
                problems.append(f"{name}: {getter} is not in its symbol table ({nm} cannot read it?)")
            leaked = [s for s in syms if f"isa_{isa}::" not in s and not s.endswith(getter)]
            if leaked:
                problems.append(f"{name} exports symbols outside isa_{isa}: {leaked[:10]}")
        elif objdump:  # machine code only in a non-LTO build
            dis = subprocess.run([objdump, "-d", "--no-show-raw-insn", o], capture_output=True,
                                 text=True, check=True).stdout
            vex = re.findall(r"^ +[0-9a-f]+:\t(v[a-z0-9]+(?:[ \t].*)?|.*%[yz]mm.*|.*%k[0-7].*)$", dis,
                             re.M)
            if vex:
                problems.append(f"baseline object {name} contains VEX/EVEX code: {vex[:5]}")
    if not objects or len(objects) != len(commands):
        problems.append(f"{len(objects)} objects for {len(commands)} compile commands")
    print("; ".join(sorted(notes)))
    print("\n".join(problems) or f"ok: {len(objects)} objects")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
