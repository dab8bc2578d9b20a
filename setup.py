"""Build the Cython kernels in cnnx/_ext, with OpenMP where the compiler has it."""
import glob
import os
import shutil
import sys
import tempfile
import warnings

import numpy
import scipy  # noqa: F401  (build requirement: the kernels cimport scipy.linalg.cython_blas)
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def openmp_flags(compiler):
    """Return (compile_args, link_args) enabling OpenMP, or None if this compiler lacks it."""
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for cflags, lflags in candidates:
        tmp = tempfile.mkdtemp()
        try:
            src = os.path.join(tmp, "omp_test.c")
            with open(src, "w") as fh:
                fh.write(OPENMP_TEST)
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            compiler.link_executable(objs, os.path.join(tmp, "omp_test"), extra_postargs=lflags)
            return cflags, lflags
        except Exception:
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            warnings.warn("cnnx: this compiler has no OpenMP; building single-threaded kernels")
            flags = ([], [])
        optimise = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O3"]
        for ext in self.extensions:
            ext.extra_compile_args = optimise + flags[0]
            ext.extra_link_args = flags[1]
        super().build_extensions()


extensions = [
    Extension(
        "cnnx._ext." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[numpy.get_include(), os.path.join("cnnx", "_ext")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=sorted(glob.glob(os.path.join("cnnx", "_ext", "*.h"))),
    )
    for path in sorted(glob.glob(os.path.join("cnnx", "_ext", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
