"""The repaired wheel's contents: a manylinux tag, nothing bundled and no OpenMP runtime linked
(adaptopt has its own thread pool), the stub and marker, one compiled module and no stray files.

Usage: contents.py WHEEL UNPACK_DIR"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile


def main() -> None:
    wheel, dest = sys.argv[1], sys.argv[2]
    name = os.path.basename(wheel)
    problems = []
    tag = re.search(r"-(manylinux[^-]*?)\.whl$", name)
    if not tag or not re.fullmatch(r"manylinux_2_\d+_x86_64(\.manylinux\w+)*", tag.group(1)):
        problems.append(f"platform tag of {name} is not manylinux_2_X_x86_64")
    names = zipfile.ZipFile(wheel).namelist()
    cores = [n for n in names if re.fullmatch(r"adaptopt/_core\.[^/]*\.so", n)]
    bundled = [n for n in names if ".libs/" in n]
    if len(cores) != 1:
        problems.append(f"expected one adaptopt/_core*.so, got {cores}")
    if bundled:
        problems.append(f"libraries bundled in the wheel (expected none): {bundled}")
    for want in ("adaptopt/_core.pyi", "adaptopt/py.typed"):
        if want not in names:
            problems.append(f"{want} is missing from the wheel")
    stray = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".o"))]
    if stray:
        problems.append(f"stray files in the wheel: {stray}")
    if len(cores) == 1:
        zipfile.ZipFile(wheel).extractall(dest)
        dyn = subprocess.run(["readelf", "-d", os.path.join(dest, cores[0])], capture_output=True,
                             text=True).stdout
        needed = re.findall(r"\(NEEDED\).*\[(.*)\]", dyn)
        runpath = re.findall(r"\((?:RUNPATH|RPATH)\).*\[(.*)\]", dyn)
        omp = [n for n in needed if re.match(r"lib(gomp|omp|iomp)", n)]
        if omp:
            problems.append(f"_core links an OpenMP runtime: NEEDED {needed}")
        print(f"NEEDED {needed}; RUNPATH {runpath}")
        # What sets the glibc floor of the tag (manylinux_2_28 allows GLIBC <= 2.28, GLIBCXX <= 3.4.24,
        # CXXABI <= 1.3.11).
        dynsym = subprocess.run(["objdump", "-T", os.path.join(dest, cores[0])], capture_output=True,
                                text=True).stdout
        floor = sorted({f"{m.group(2)}@{m.group(1)}" for m in re.finditer(
            r"\((GLIBC_2\.(?:29|[3-9]\d)|GLIBCXX_3\.4\.(?:2[5-9]|[3-9]\d)|CXXABI_1\.3\.(?:1[2-9]|[2-9]\d))\)"
            r"\s+(\S+)", dynsym)})
        print(f"versioned symbols newer than manylinux_2_28 allows: {floor or 'none'}")
    print("\n".join(problems) or "ok")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
