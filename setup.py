"""setuptools shim; the metadata lives in setup.cfg.

``conf/`` (the example configuration and the bundled demo repository) is copied into
the built package as ``bcfg2_cherry/_conf`` so that ``bcfg2-cherry serve --demo`` works
from a plain ``pip install .``; an editable install reads ``conf/`` in place.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConf(build_py):
    """build_py that also ships conf/ inside the package."""

    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        target = os.path.join(self.build_lib, "bcfg2_cherry", "_conf")
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(os.path.join(here, "conf"), target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithConf})
