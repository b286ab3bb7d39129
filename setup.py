"""Install mtl_tagger: multi-task attribute-value extraction with a coupling loss."""
from setuptools import find_packages, setup

setup(
    name="mtl_tagger",
    version="0.1.0",
    description="Multi-task BiLSTM-CRF attribute-value extraction with a coupling loss",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["mtl_tagger", "mtl_tagger.*"]),
    install_requires=[
        # The stack is fixed: tfa 0.23 (last release) only imports beside TF 2.15 / Keras 2.
        "tensorflow-cpu==2.15.1; platform_machine=='x86_64'",
        "tensorflow==2.15.1; platform_machine!='x86_64'",
        "tensorflow-addons==0.23.0",
        "numpy<2",
        "pandas",
        "absl-py",
        "scikit-learn",
        "scipy",  # shortlist.py's word-cluster components; already a dependency of scikit-learn
    ],
    extras_require={
        "plots": ["matplotlib"],
        "test": ["pytest", "ruff", "matplotlib"],
    },
)
