//! Limited-memory BFGS for smooth convex objectives, with a backtracking (Armijo) line search.
//!
//! Written here rather than taken from a crate: the probes need only this, on plain `f64`
//! slices; `argmin` would bring its own math traits and a second `ndarray` version.

use std::collections::VecDeque;

/// When to stop.
#[derive(Clone, Copy, Debug)]
pub struct LbfgsConfig {
    /// Correction pairs kept.
    pub memory: usize,
    /// Stop when the largest gradient component falls below this (scaled by max(1, |f|)).
    pub gradient_tolerance: f64,
    /// Iterations at most.
    pub max_iterations: usize,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig {
            memory: 10,
            gradient_tolerance: 1e-7,
            max_iterations: 2000,
        }
    }
}

/// How a minimisation ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsReport {
    /// Iterations taken.
    pub iterations: usize,
    /// Objective at the end.
    pub value: f64,
    /// Largest gradient component at the end.
    pub gradient_max: f64,
    /// Whether the gradient tolerance was met (else the iteration limit or a failed line search
    /// stopped it).
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Minimises `f` from `x` (updated in place). `f(x, grad)` returns the value and writes the
/// gradient.
pub fn minimise(
    x: &mut [f64],
    config: LbfgsConfig,
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
) -> LbfgsReport {
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut value = f(x, &mut g);
    let mut pairs: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut direction = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    let mut alpha_hist = vec![0.0; config.memory];
    for iteration in 0..config.max_iterations {
        let gmax = max_abs(&g);
        if gmax <= config.gradient_tolerance * value.abs().max(1.0) {
            return LbfgsReport {
                iterations: iteration,
                value,
                gradient_max: gmax,
                converged: true,
            };
        }
        // Two-loop recursion: direction = -H g.
        direction.copy_from_slice(&g);
        for (i, (s, y, rho)) in pairs.iter().enumerate().rev() {
            let a = rho * dot(s, &direction);
            alpha_hist[i] = a;
            direction.iter_mut().zip(y).for_each(|(d, yi)| *d -= a * yi);
        }
        let gamma = pairs
            .back()
            .map_or(1.0 / gmax.max(1e-12), |(s, y, _)| dot(s, y) / dot(y, y));
        direction.iter_mut().for_each(|d| *d *= gamma);
        for (i, (s, y, rho)) in pairs.iter().enumerate() {
            let b = rho * dot(y, &direction);
            direction
                .iter_mut()
                .zip(s)
                .for_each(|(d, si)| *d += (alpha_hist[i] - b) * si);
        }
        direction.iter_mut().for_each(|d| *d = -*d);
        let mut slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            pairs.clear();
            direction
                .iter_mut()
                .zip(&g)
                .for_each(|(d, gi)| *d = -gi / gmax.max(1e-12));
            slope = dot(&g, &direction);
        }
        // Backtracking line search on the Armijo condition.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            x_new
                .iter_mut()
                .zip(x.iter())
                .zip(&direction)
                .for_each(|((xn, xi), d)| *xn = xi + step * d);
            let v = f(&x_new, &mut g_new);
            if v.is_finite() && v <= value + 1e-4 * step * slope {
                accepted = Some(v);
                break;
            }
            step *= 0.5;
        }
        let Some(v) = accepted else {
            return LbfgsReport {
                iterations: iteration,
                value,
                gradient_max: gmax,
                converged: false,
            };
        };
        let s: Vec<f64> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if pairs.len() == config.memory {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        value = v;
    }
    LbfgsReport {
        iterations: config.max_iterations,
        value,
        gradient_max: max_abs(&g),
        converged: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_an_ill_conditioned_quadratic_and_rosenbrock() {
        let mut x = vec![5.0, -3.0, 1.0];
        let scales = [1.0, 100.0, 1e4];
        let r = minimise(&mut x, LbfgsConfig::default(), |x, g| {
            let mut v = 0.0;
            for i in 0..3 {
                let d = x[i] - i as f64;
                v += 0.5 * scales[i] * d * d;
                g[i] = scales[i] * d;
            }
            v
        });
        assert!(r.converged, "{r:?}");
        for (i, xi) in x.iter().enumerate() {
            assert!((xi - i as f64).abs() < 1e-6, "{x:?}");
        }
        let mut x = vec![-1.2, 1.0];
        let r = minimise(
            &mut x,
            LbfgsConfig {
                gradient_tolerance: 1e-10,
                ..Default::default()
            },
            |x, g| {
                let (a, b) = (x[0], x[1]);
                g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
                g[1] = 200.0 * (b - a * a);
                (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
            },
        );
        assert!(
            r.converged && (x[0] - 1.0).abs() < 1e-5 && (x[1] - 1.0).abs() < 1e-5,
            "{r:?} {x:?}"
        );
    }
}
