"""Package discovery for the three source folders (pyproject.toml holds everything else).

llm4seg/, export/ and runtime/ install as llm4seg, llm4seg.export and llm4seg.runtime; every
sub-package below them is found here, so a new folder (such as runtime/backends/) can never be
left out of the wheel. tests/test_packaging.py builds the wheel and imports it in a fresh venv.
"""

from setuptools import find_packages, setup

ROOTS = {"llm4seg": "llm4seg", "llm4seg.export": "export", "llm4seg.runtime": "runtime"}


def discover() -> list[str]:
    packages = []
    for name, folder in ROOTS.items():
        packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return packages


setup(packages=discover(), package_dir=ROOTS,
      # Data read at run time: the TensorRT ONNX support matrix used by `llm4seg check`, and the
      # example Holoscan application's YAML.
      package_data={"llm4seg.export": ["data/*.json"], "llm4seg.runtime.doors.holoscan": ["*.yaml"]})
