//! `.npy` files in and out of the backbone: normalised pixels `[N, 3, H, W]` in, features out.

use std::path::Path;

use ndarray::{Array4, ArrayD, Dimension};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use super::BackboneError;

/// Reads an f32 `.npy` of shape `[N, 3, H, W]`.
pub fn read_pixels(path: &Path) -> Result<Array4<f32>, BackboneError> {
    let file = std::fs::File::open(path).map_err(|source| BackboneError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let array =
        ArrayD::<f32>::read_npy(std::io::BufReader::new(file)).map_err(|e| BackboneError::Npy {
            path: path.to_path_buf(),
            reason: format!("not a readable f32 .npy array ({e})"),
        })?;
    let shape = array.shape().to_vec();
    let bad_shape = || BackboneError::InputShape {
        what: path.display().to_string(),
        expected: "[N, 3, H, W] (f32, normalised pixels)".into(),
        found: shape.clone(),
    };
    if array.ndim() != 4 || shape.get(1) != Some(&3) || shape.contains(&0) {
        return Err(bad_shape());
    }
    array.into_dimensionality().map_err(|_| bad_shape())
}

/// Writes an f32 array as `.npy` (little-endian, C order).
pub fn write<D: Dimension>(
    path: &Path,
    array: &ndarray::Array<f32, D>,
) -> Result<(), BackboneError> {
    let file = std::fs::File::create(path).map_err(|source| BackboneError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = std::io::BufWriter::new(file);
    array.write_npy(&mut w).map_err(|e| BackboneError::Npy {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::io::Write::flush(&mut w).map_err(|source| BackboneError::Io {
        path: path.to_path_buf(),
        source,
    })
}
