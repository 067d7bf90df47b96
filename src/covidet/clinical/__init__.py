"""DL#3: clinical feature schema, synthetic data, SVM training and pickle-free numpy inference."""

from __future__ import annotations

from covidet.clinical._schema import (
    CLINICAL_SCHEMA,
    FEATURE_NAMES,
    N_FEATURES,
    ClinicalDataError,
    Feature,
    validate_features,
)
from covidet.clinical._svm import KERNELS, ClinicalSVM, Fusion, demo_model_path
from covidet.clinical._svm_file import ModelFileError, identity, load_svm, save_svm
from covidet.clinical._svm_train import from_sklearn, train_svm
from covidet.clinical._synthetic import P_DL2_COLUMN, generate_clinical, read_csv, write_csv

__all__ = [
    "CLINICAL_SCHEMA",
    "FEATURE_NAMES",
    "KERNELS",
    "N_FEATURES",
    "P_DL2_COLUMN",
    "ClinicalDataError",
    "ClinicalSVM",
    "Feature",
    "Fusion",
    "ModelFileError",
    "demo_model_path",
    "from_sklearn",
    "generate_clinical",
    "identity",
    "load_svm",
    "read_csv",
    "save_svm",
    "train_svm",
    "validate_features",
    "write_csv",
]
