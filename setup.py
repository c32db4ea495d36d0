"""Build script: compiles every ``csrc/*.pyx`` into an extension module ``aeronpy.<name>``.

New compiled modules need no edit here: drop ``csrc/_name.pyx`` in and it is built as
``aeronpy._name``. Its cdef contract lives in ``csrc/aeronpy/_name.pxd``: Cython finds a
module's ``.pxd`` by its full dotted name, and ``csrc/`` is on the include path, so other
modules ``from aeronpy._name cimport ...``.
"""
import os
import sys
from glob import glob

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build requirement
    raise SystemExit("aeronpy needs Cython to build its compiled modules: pip install Cython") from exc

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("AERONPY_DEBUG") == "1"  # compile-time switch for expensive invariant checks


def extensions():
    exts = []
    for pyx in sorted(glob(os.path.join("csrc", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if sys.platform == "win32":
            compile_args = ["/O2"]
            libraries = ["ws2_32"]
        else:
            compile_args = ["-O3", "-fno-strict-aliasing"]
            if DEBUG:
                compile_args = ["-O0", "-g"]
            libraries = []
        exts.append(
            Extension(
                f"aeronpy.{name}",
                [pyx],
                include_dirs=["csrc"],
                extra_compile_args=compile_args,
                libraries=libraries,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return exts


setup(
    ext_modules=cythonize(
        extensions(),
        include_path=["csrc"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG,
        },
        compile_time_env={"AERONPY_DEBUG": DEBUG},
    ),
)
