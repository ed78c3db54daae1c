//! Probing: fitting light heads on frozen backbone features (the DINOv3 linear-evaluation
//! protocol) and measuring them.
//!
//! [`logreg`] fits L2-regularised logistic regression as scikit-learn does (checked against it
//! by `host/tests/probe_sklearn.rs`); [`metrics`] scores predictions; [`lbfgs`] is the optimiser.

pub mod dataset;
pub mod extract;
pub mod fit;
pub mod lbfgs;
pub mod logreg;
pub mod masks;
pub mod metrics;
pub mod sweep;
