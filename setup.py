"""Install mtl_tagger: multi-task attribute-value extraction with a coupling loss.

Two supported stacks (README): `.[paper]` pins the paper's TensorFlow 2.15 with tensorflow-addons 0.23
and Keras 2; a plain install takes the current TensorFlow (2.21, Keras 3, no tensorflow-addons).
"""
from setuptools import find_packages, setup

TF_CPU = "platform_machine=='x86_64'"  # tensorflow-cpu wheels exist for x86_64 only
TF_ANY = "platform_machine!='x86_64'"

setup(
    name="mtl_tagger",
    version="0.2.0",
    description="Multi-task BiLSTM-CRF attribute-value extraction with a coupling loss",
    python_requires=">=3.11",
    packages=find_packages(include=["mtl_tagger", "mtl_tagger.*"]),
    install_requires=[
        f"tensorflow-cpu>=2.15.1; {TF_CPU}",
        f"tensorflow>=2.15.1; {TF_ANY}",
        "numpy",
        "pandas",
        "absl-py",
        "scikit-learn",
        "scipy",  # shortlist.py's word-cluster components; already a dependency of scikit-learn
        "tensorboard",  # tf.summary; TensorFlow >= 2.16 no longer installs it
        "regex>=2023.10.3",  # text.py: Unicode properties (\p{M}) and grapheme clusters (\X) that `re` lacks
    ],
    extras_require={
        "paper": [f"tensorflow-cpu==2.15.1; {TF_CPU}", f"tensorflow==2.15.1; {TF_ANY}", "tensorflow-addons==0.23.0",
                  "numpy<2"],
        "current": [f"tensorflow-cpu==2.21.0; {TF_CPU}", f"tensorflow==2.21.0; {TF_ANY}"],
        "plots": ["matplotlib"],
        "baselines": ["sklearn-crfsuite"],
        "peer": ["torch==2.13.0"],
        "ray": ["ray[data]", "pyarrow<23"],  # pyarrow 23 does not import beside numpy<2 (the paper stack)
        "test": ["pytest", "ruff", "matplotlib", "sklearn-crfsuite"],
    },
)
