"""Builds udpbench._fast, the Cython core. Metadata lives in pyproject.toml."""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "udpbench._fast",
        ["udpbench/_fast.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("_GNU_SOURCE", "1"), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O2"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        # Directives are set once, here; bounds checks stay on except where a function opts out.
        compiler_directives={"embedsignature": True, "cdivision": True},
    )
)
