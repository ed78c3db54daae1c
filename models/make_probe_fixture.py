#!/usr/bin/env python3
"""Reference outputs of scikit-learn's LogisticRegression for `host/tests/probe_sklearn.rs`.

Run by hand (not in CI), from the repository root:

    /tmp/refenv/bin/pip install scikit-learn==1.7.2
    /tmp/refenv/bin/python models/make_probe_fixture.py

Synthetic "features" (overlapping Gaussian clusters, imbalanced classes, deterministic seed) are
standardised on the training set (StandardScaler) and fitted with LogisticRegression(lbfgs), for
a 3-class problem with balanced class weights and a 2-class one without, at two values of C.
Written to host/tests/data/probe_sklearn/: the features and labels, the test-set probabilities,
and the accuracy and one-vs-rest ROC AUC in reference.json.
"""

import json
import pathlib

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

OUT = pathlib.Path(__file__).resolve().parent.parent / "host/tests/data/probe_sklearn"
FEATURES = 24


def clusters(rng, counts, spread):
    centres = rng.normal(0.0, 1.0, (len(counts), FEATURES))
    x = np.concatenate([c + rng.normal(0.0, spread, (n, FEATURES)) * rng.uniform(0.5, 2.0, FEATURES)
                        for c, n in zip(centres, counts)])
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    return x.astype(np.float32), y


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261128)
    reference = {"sklearn": sklearn.__version__}
    for name, counts_train, counts_test, weight in [
        ("multiclass", [120, 60, 30], [60, 30, 15], "balanced"),
        ("binary", [90, 40], [45, 20], None),
    ]:
        # One draw, split: train and test share the cluster centres.
        x, y = clusters(rng, [a + b for a, b in zip(counts_train, counts_test)], 1.6)
        train = np.concatenate([np.arange(sum(counts_train[:k]) + sum(counts_test[:k]),
                                          sum(counts_train[:k]) + sum(counts_test[:k]) + counts_train[k])
                                for k in range(len(counts_train))])
        test = np.setdiff1d(np.arange(len(y)), train)
        np.save(OUT / f"{name}_x_train.npy", x[train])
        np.save(OUT / f"{name}_y_train.npy", y[train].astype(np.int64))
        np.save(OUT / f"{name}_x_test.npy", x[test])
        np.save(OUT / f"{name}_y_test.npy", y[test].astype(np.int64))
        for c in (0.1, 1.0):
            model = make_pipeline(StandardScaler(), LogisticRegression(
                C=c, class_weight=weight, solver="lbfgs", tol=1e-10, max_iter=100000))
            model.fit(x[train], y[train])
            proba = model.predict_proba(x[test]).astype(np.float32)
            np.save(OUT / f"{name}_proba_C{c}.npy", proba)
            auc = roc_auc_score(y[test], proba[:, 1] if proba.shape[1] == 2 else proba, multi_class="ovr")
            reference[f"{name}_C{c}"] = {
                "class_weight": weight or "none",
                "accuracy": accuracy_score(y[test], proba.argmax(1)),
                "roc_auc_ovr": auc,
            }
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(json.dumps(reference, indent=1))


if __name__ == "__main__":
    main()
