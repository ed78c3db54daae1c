//! Classification metrics, defined as scikit-learn defines them.

use ndarray::ArrayView2;

/// Fraction of samples whose most probable class is the label.
pub fn accuracy(proba: ArrayView2<f32>, labels: &[usize]) -> f64 {
    let hits = proba
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(row, l)| argmax(row.iter().copied()) == Some(**l))
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// Mean over classes of the recall (scikit-learn's `balanced_accuracy_score`); classes absent
/// from `labels` are left out.
pub fn balanced_accuracy(proba: ArrayView2<f32>, labels: &[usize]) -> f64 {
    let k = proba.ncols();
    let (mut hit, mut total) = (vec![0usize; k], vec![0usize; k]);
    for (row, &l) in proba.rows().into_iter().zip(labels) {
        if l < k {
            total[l] += 1;
            if argmax(row.iter().copied()) == Some(l) {
                hit[l] += 1;
            }
        }
    }
    let present: Vec<f64> = (0..k)
        .filter(|&c| total[c] > 0)
        .map(|c| hit[c] as f64 / total[c] as f64)
        .collect();
    present.iter().sum::<f64>() / present.len().max(1) as f64
}

/// Index of the largest value (the first on ties), `None` for an empty or all-NaN row.
pub fn argmax(values: impl Iterator<Item = f32>) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, v) in values.enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Area under the ROC curve of scores for a binary truth, ties counted half (the
/// Mann-Whitney statistic); `None` when one side is empty.
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f32, bool)> = scores
        .iter()
        .copied()
        .zip(positive.iter().copied())
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n_pos = pairs.iter().filter(|p| p.1).count() as f64;
    let n_neg = pairs.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    // Sum of the positives' ranks, with tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += pairs[i..=j].iter().filter(|p| p.1).count() as f64 * mean_rank;
        i = j + 1;
    }
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// One-vs-rest ROC AUC averaged over classes (scikit-learn's `roc_auc_score(multi_class="ovr",
/// average="macro")`; for two classes, the AUC of class 1). Classes with no positive or no
/// negative sample are left out.
pub fn roc_auc_ovr(proba: ArrayView2<f32>, labels: &[usize]) -> Option<f64> {
    let k = proba.ncols();
    let class_auc = |c: usize| {
        let scores: Vec<f32> = proba.column(c).to_vec();
        let truth: Vec<bool> = labels.iter().map(|&l| l == c).collect();
        roc_auc(&scores, &truth)
    };
    if k == 2 {
        return class_auc(1);
    }
    let aucs: Vec<f64> = (0..k).filter_map(class_auc).collect();
    (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn auc_and_accuracy_on_small_cases() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.6], &[true, true]), None);
        let p = array![
            [0.7f32, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.3, 0.3, 0.4],
            [0.5, 0.4, 0.1]
        ];
        let y = [0, 1, 2, 1];
        assert_eq!(accuracy(p.view(), &y), 0.75);
        assert!((balanced_accuracy(p.view(), &y) - (1.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(argmax([f32::NAN, 1.0, 1.0].into_iter()), Some(1));
    }
}
