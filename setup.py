"""Builds udpbench.engine._fast, the Cython core. Metadata lives in pyproject.toml."""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class build_ext_also_in_tree(build_ext):
    """Also put the compiled core beside the sources (pip builds in the source tree).

    Then `python -m udpbench`, run from this directory right after `pip install .`, works:
    Python puts the current directory first on sys.path, so it imports this tree's package,
    which would otherwise lack the compiled core.
    """

    def run(self):
        super().run()
        if not self.inplace:
            try:
                self.copy_extensions_to_source()
            except OSError:
                pass  # a read-only source tree: the installed package still works elsewhere


extensions = [
    Extension(
        "udpbench.engine._fast",
        ["udpbench/engine/_fast.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("_GNU_SOURCE", "1"), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O2"],
    )
]

setup(
    cmdclass={"build_ext": build_ext_also_in_tree},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        # Directives are set once, here; bounds checks stay on except where a function opts out.
        compiler_directives={"embedsignature": True, "cdivision": True},
    ),
)
