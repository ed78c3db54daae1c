//! 2D rotary position tables, precomputed for one input size so the graph holds them as
//! constants (no run-time shape arithmetic, no `If`).

/// cos and signed-sin tables over all tokens, `[tokens, head_dim]` row-major.
///
/// Prefix tokens (CLS, registers) get cos 1 and sin 0, so applying the tables to every token leaves
/// them exactly unrotated, as transformers does by splitting them off. The sin table carries
/// rotate-half's sign: `rope(v) = v * cos + swap_halves(v) * sin_signed`.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeTables {
    /// cos of each angle.
    pub cos: Vec<f32>,
    /// -sin for the first half of the head dims, +sin for the second.
    pub sin_signed: Vec<f32>,
    /// Rows: prefix tokens then patches.
    pub tokens: usize,
    /// Columns.
    pub head_dim: usize,
}

/// The tables for a grid of `hp` x `wp` patches, computed in f32 in the same order as
/// transformers' `DINOv3ViTRopePositionEmbedding` so that the constants match it bit for bit
/// wherever the platform's `powf`, `cos` and `sin` agree with PyTorch's.
pub fn rope_tables(hp: usize, wp: usize, head_dim: usize, theta: f32, prefix: usize) -> RopeTables {
    let quarter = head_dim / 4;
    // inv_freq = 1 / theta^(arange(0, 1, 4/Dh)); the steps 4j/Dh are exact in f32 for Dh a power
    // of two, and close enough otherwise.
    let step = 4.0f32 / head_dim as f32;
    let inv_freq: Vec<f32> = (0..quarter)
        .map(|j| 1.0 / theta.powf(j as f32 * step))
        .collect();
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let axis = |i: usize, n: usize| 2.0f32 * ((i as f32 + 0.5) / n as f32) - 1.0;
    let tokens = prefix + hp * wp;
    let mut cos = vec![1.0f32; tokens * head_dim];
    let mut sin_signed = vec![0.0f32; tokens * head_dim];
    let half = head_dim / 2;
    for r in 0..hp {
        for c in 0..wp {
            let row = prefix + r * wp + c;
            let (y, x) = (axis(r, hp), axis(c, wp));
            for d in 0..half {
                // Angles laid out [y frequencies, x frequencies], then tiled twice.
                let coord = if d < quarter { y } else { x };
                let angle = two_pi * coord * inv_freq[d % quarter];
                let (s, co) = angle.sin_cos();
                for (col, sign) in [(d, -1.0f32), (d + half, 1.0)] {
                    cos[row * head_dim + col] = co;
                    sin_signed[row * head_dim + col] = sign * s;
                }
            }
        }
    }
    RopeTables {
        cos,
        sin_signed,
        tokens,
        head_dim,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn prefix_rows_leave_tokens_unrotated() {
        let t = rope_tables(2, 3, 8, 100.0, 5);
        assert_eq!(t.tokens, 11);
        for row in 0..5 {
            assert!(t.cos[row * 8..(row + 1) * 8].iter().all(|&v| v == 1.0));
            assert!(
                t.sin_signed[row * 8..(row + 1) * 8]
                    .iter()
                    .all(|&v| v == 0.0)
            );
        }
    }

    #[test]
    fn first_frequency_is_one_period_per_unit_and_axes_are_separate() {
        // Dh 8: quarter 2; dims 0,1 are y (freq 1, 1/10), dims 2,3 are x; 4..8 repeat.
        let (hp, wp) = (2, 4);
        let t = rope_tables(hp, wp, 8, 100.0, 0);
        let y0 = 2.0 * (0.5 / hp as f64) - 1.0;
        let x3 = 2.0 * (3.5 / wp as f64) - 1.0;
        let row = 3; // r 0, c 3
        let expect_y = (2.0 * std::f64::consts::PI * y0).cos();
        let expect_x = (2.0 * std::f64::consts::PI * x3 / 10.0).sin();
        assert!((t.cos[row * 8] as f64 - expect_y).abs() < 1e-6);
        assert!((t.cos[row * 8 + 4] as f64 - expect_y).abs() < 1e-6);
        assert!((t.sin_signed[row * 8 + 3] as f64 + expect_x).abs() < 1e-6);
        assert!((t.sin_signed[row * 8 + 7] as f64 - expect_x).abs() < 1e-6);
    }
}
