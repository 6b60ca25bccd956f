"""Print where the nvidia-cublas wheel of this Python environment keeps cuBLAS, for CMake.

Lines: the include folder (cublas_v2.h), the library file (libcublas.so.<major>), the wheel's
version, and the library's folder relative to site-packages (for a run path relative to an
installed fastbp). Exit status 1 when no such wheel is installed.
"""

import importlib.metadata as metadata
import os
import sys

for name in ("nvidia-cublas", "nvidia-cublas-cu13", "nvidia-cublas-cu12"):
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    files = list(dist.files or ())
    headers = [f for f in files if f.name == "cublas_v2.h"]
    libraries = sorted(f for f in files if f.name.startswith("libcublas.so."))
    if not headers or not libraries:
        continue
    header = os.path.abspath(str(dist.locate_file(headers[0])))
    library = os.path.abspath(str(dist.locate_file(libraries[0])))
    root = os.path.abspath(str(dist.locate_file("")))
    print(os.path.dirname(header))
    print(library)
    print(dist.version)
    print(os.path.relpath(os.path.dirname(library), root).replace(os.sep, "/"))
    sys.exit(0)
sys.exit(1)
