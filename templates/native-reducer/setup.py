"""The extension: ``_native.pyx`` compiled against the ABI header of the aos installed in the build
environment (``aos.get_include()``). Everything else is in pyproject.toml."""

import aos
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("tally_reducer._native", ["src/tally_reducer/_native.pyx"], include_dirs=[aos.get_include()])],
        language_level=3,
    )
)
