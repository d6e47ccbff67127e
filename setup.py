"""Install bilevel_core, lds and the repository folder datasets/ as lds.datasets.

The folder ``datasets/`` is mapped to ``lds.datasets`` (never a top-level ``datasets``,
which belongs to Hugging Face). Use the editable install (``pip install -e .``), see README.
"""

from setuptools import setup

setup(
    name="lds-bilevel",
    version="0.1.0",
    description=(
        "Graph structure learning (LDS, ICML 2019) on a general bilevel-optimization core "
        "(reverse, forward and implicit hypergradients, discrete estimators)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["bilevel_core", "bilevel_core.hypergradient", "lds", "lds.datasets"],
    package_dir={"lds.datasets": "datasets"},
    package_data={"bilevel_core": ["py.typed"], "lds": ["py.typed"]},
    install_requires=[
        "torch>=2.2",
        "torch-geometric>=2.4",
        "networkx>=3.0",
        "scikit-learn>=1.3",
        "numpy>=1.24",
        "scipy>=1.10",
        "tqdm>=4.60",
        "pillow>=9.0",
    ],
    extras_require={
        "dev": ["pytest>=7", "hypothesis>=6", "ruff>=0.4", "mypy>=1.8", "matplotlib>=3.6"],
        "plot": ["matplotlib>=3.6"],
        "bench": ["higher>=0.2", "torchopt>=0.7", "matplotlib>=3.6"],
        "scatter": ["torch-scatter>=2.1"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
