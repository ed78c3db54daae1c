//! Our logistic regression against scikit-learn's on the same features (fixture from
//! `models/make_probe_fixture.py`): accuracy and ROC AUC within 1 percentage point, and the
//! predicted probabilities close.

use std::path::{Path, PathBuf};

use dinoedge::probe::logreg::{
    ClassWeight, FitError, LogRegConfig, fit_multi_label, fit_single_label,
};
use dinoedge::probe::metrics::{accuracy, roc_auc_ovr};
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe_sklearn")
}

fn load(name: &str) -> (Array2<f32>, Vec<usize>, Array2<f32>, Vec<usize>) {
    let x_train: Array2<f32> = read_npy(data().join(format!("{name}_x_train.npy"))).unwrap();
    let y_train: Array1<i64> = read_npy(data().join(format!("{name}_y_train.npy"))).unwrap();
    let x_test: Array2<f32> = read_npy(data().join(format!("{name}_x_test.npy"))).unwrap();
    let y_test: Array1<i64> = read_npy(data().join(format!("{name}_y_test.npy"))).unwrap();
    let labels = |y: Array1<i64>| y.iter().map(|&v| v as usize).collect::<Vec<_>>();
    (x_train, labels(y_train), x_test, labels(y_test))
}

#[test]
fn matches_scikit_learn_logistic_regression() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data().join("reference.json")).unwrap())
            .unwrap();
    for (name, classes, weight) in [
        ("multiclass", 3, ClassWeight::Balanced),
        ("binary", 2, ClassWeight::None),
    ] {
        let (x_train, y_train, x_test, y_test) = load(name);
        for c in ["0.1", "1.0"] {
            let config = LogRegConfig {
                c: c.parse().unwrap(),
                class_weight: weight,
                ..Default::default()
            };
            let (model, report) =
                fit_single_label(x_train.view(), &y_train, classes, &config).unwrap();
            assert!(report.converged, "{name} C={c}: {report:?}");
            let proba = model.predict_proba(x_test.view()).unwrap();
            let expected: Array2<f32> =
                read_npy(data().join(format!("{name}_proba_C{c}.npy"))).unwrap();
            let max = proba
                .iter()
                .zip(expected.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                max < 1e-5,
                "{name} C={c}: probabilities differ by up to {max}"
            );
            let r = &reference[format!("{name}_C{c}")];
            let acc = accuracy(proba.view(), &y_test);
            let auc = roc_auc_ovr(proba.view(), &y_test).unwrap();
            assert!(
                (acc - r["accuracy"].as_f64().unwrap()).abs() <= 0.01,
                "{name} C={c}: accuracy {acc} vs {r}"
            );
            assert!(
                (auc - r["roc_auc_ovr"].as_f64().unwrap()).abs() <= 0.01,
                "{name} C={c}: AUC {auc} vs {r}"
            );
        }
    }
}

#[test]
fn multi_label_fits_each_label_and_bad_input_is_an_error() {
    let (x_train, y_train, x_test, y_test) = load("multiclass");
    // Label k: "class is k" (one-vs-rest) — each sigmoid should rank its class first.
    let ml: Vec<Vec<bool>> = y_train
        .iter()
        .map(|&y| (0..3).map(|k| k == y).collect())
        .collect();
    let (model, reports) =
        fit_multi_label(x_train.view(), &ml, 3, &LogRegConfig::default()).unwrap();
    assert!(reports.iter().all(|r| r.converged));
    let proba = model.predict_proba(x_test.view()).unwrap();
    assert!(roc_auc_ovr(proba.view(), &y_test).unwrap() > 0.9);
    assert!(proba.iter().all(|p| (0.0..=1.0).contains(p)));

    let cfg = LogRegConfig::default();
    assert_eq!(
        fit_single_label(x_train.view(), &y_train[..10], 3, &cfg).unwrap_err(),
        FitError::Labels("10 labels for 210 feature rows".into())
    );
    let only01: Vec<usize> = y_train.iter().map(|&y| y.min(1)).collect();
    assert_eq!(
        fit_single_label(x_train.view(), &only01, 3, &cfg).unwrap_err(),
        FitError::EmptyClass { class: 2 }
    );
    let mut nan = x_train.clone();
    nan[[7, 3]] = f32::NAN;
    assert_eq!(
        fit_single_label(nan.view(), &y_train, 3, &cfg).unwrap_err(),
        FitError::NonFinite { row: 7 }
    );
    assert_eq!(
        fit_single_label(x_train.slice(ndarray::s![..0, ..]), &[], 3, &cfg).unwrap_err(),
        FitError::Empty
    );
}
