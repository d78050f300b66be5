from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="simkit",
    version="0.1.0",
    description="Biologically plausible credit assignment, written out explicitly on NumPy/CuPy",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(exclude=["tests*", "benchmarks*", "figures*"]),
    python_requires=">=3.10",
    install_requires=["numpy>=1.25", "scipy>=1.10", "numba>=0.58", "mlxtend>=0.22",
                      "matplotlib>=3.7", "tqdm>=4.66", "threadpoolctl>=3"],
    extras_require={"gpu": ["cupy-cuda12x>=13"], "test": ["pytest>=7"]},
    entry_points={"console_scripts": ["simkit=simkit.cli:main"]},
)
