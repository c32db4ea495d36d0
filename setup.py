"""Build script: compiles every ``csrc/*.pyx`` into an extension module ``aeronpy.<name>``.

New compiled modules need no edit here: drop ``csrc/_name.pyx`` in and it is built as
``aeronpy._name``. Its cdef contract lives in ``csrc/aeronpy/_name.pxd``: Cython finds a
module's ``.pxd`` by its full dotted name, and ``csrc/`` is on the include path, so other
modules ``from aeronpy._name cimport ...``.
"""
import filecmp
import os
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build requirement
    raise SystemExit("aeronpy needs Cython to build its compiled modules: pip install Cython") from exc

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("AERONPY_DEBUG") == "1"  # compile-time switch for expensive invariant checks


class InplaceByRename(build_ext):
    """``build_ext --inplace`` puts each module in place by rename, and leaves one whose bytes
    did not change alone. setuptools writes over every module's file in place, even unchanged
    ones; a running process that has it mapped (a test cluster's node, a test run) then runs
    the new bytes at old offsets and can crash."""

    def run(self):
        super().run()
        self._remove_stale_modules()

    def _remove_stale_modules(self):
        """Delete compiled modules of the package that no ``csrc/*.pyx`` builds any more (one
        renamed or removed): left in ``build/lib``, a wheel or ``pip install .`` packed them,
        and in place they stayed importable."""
        wanted = {ext.name.rsplit(".", 1)[-1] for ext in self.extensions}
        package_dir = os.path.join(HERE if self.inplace else self.build_lib, "aeronpy")
        for path in glob(os.path.join(package_dir, "_*.so")) + glob(os.path.join(package_dir, "_*.pyd")):
            if os.path.basename(path).split(".", 1)[0] not in wanted:
                os.remove(path)
                print(f"removed {path}: no csrc/*.pyx builds it any more")

    def copy_file(self, infile, outfile, *args, **kwargs):
        if not self.inplace or os.name == "nt" or not outfile.endswith(".so"):
            return super().copy_file(infile, outfile, *args, **kwargs)
        if os.path.exists(outfile) and filecmp.cmp(infile, outfile, shallow=False):
            return outfile, False
        tmp = outfile + ".tmp-build"
        super().copy_file(infile, tmp, *args, **kwargs)
        os.replace(tmp, outfile)
        return outfile, True


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
    cmdclass={"build_ext": InplaceByRename},
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
