//! Support for tests that stand the fake shim (`host/tensorrt/shim/fake.c`) in for TensorRT: a
//! graph file with the control file the fake reads beside it, whose output table holds what the
//! CPU computes for the frames the test will run, so a gate against the CPU can pass (or, with
//! `noise=...` among the extra lines, fail).

use std::path::{Path, PathBuf};

use crate::backbone::{Backbone, GraphOptions, InputSize, ModelDir, RuntimeOptions};
use crate::engine::EngineRequest;

fn le_bytes<'a>(values: impl IntoIterator<Item = &'a f32>) -> Vec<u8> {
    values.into_iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `dir/graph.onnx` for `model` at `size`, and `dir/graph.onnx.fake`: batch 1, the
/// backbone's input and `last_hidden_state`, a table of the CPU's outputs for each of `frames`
/// (normalised pixels, `[3, H, W]` each), then the `extra` control lines.
pub fn write_graph_for_fake(
    dir: &Path,
    model: &ModelDir,
    size: InputSize,
    frames: &[Vec<f32>],
    extra: &str,
) -> Result<PathBuf, String> {
    let graph = dir.join("graph.onnx");
    model
        .write_onnx(size, &GraphOptions::default(), &graph, false)
        .map_err(|e| e.to_string())?;
    let cpu = Backbone::load(
        model,
        size,
        &RuntimeOptions {
            engine: EngineRequest::Cpu,
            ..RuntimeOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let (h, w) = (size.height, size.width);
    let mut table = Vec::new();
    let mut tokens = 0;
    for f in frames {
        let pixels =
            ndarray::Array4::from_shape_vec((1, 3, h, w), f.clone()).map_err(|e| e.to_string())?;
        let out = cpu.run(pixels.view()).map_err(|e| e.to_string())?;
        tokens = out.last_hidden_state.shape().get(1).copied().unwrap_or(0);
        table.extend(dinoedge_tensorrt::fake_table_record(
            &le_bytes(f),
            &le_bytes(out.last_hidden_state.iter()),
        ));
    }
    std::fs::write(dir.join("table.bin"), table).map_err(|e| e.to_string())?;
    let control = format!(
        "input=pixel_values:f32:-1x3x{h}x{w}\noutput=last_hidden_state:f32:-1x{tokens}x{}\ntable=table.bin\n{extra}",
        model.config.hidden_size
    );
    std::fs::write(dir.join("graph.onnx.fake"), control).map_err(|e| e.to_string())?;
    Ok(graph)
}
