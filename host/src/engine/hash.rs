//! The hash every result and report carries, naming the exact graph that produced it.

use std::io::Read;
use std::path::Path;

use prost::Message;
use sha2::{Digest, Sha256};
use tract_onnx::pb::ModelProto;

/// Hex digits kept of the SHA-256: enough to tell graphs apart in a report.
const HASH_HEX_DIGITS: usize = 16;

/// SHA-256 of the graph's content (every node, initializer, input and output, encoded in
/// order), first 16 hex digits. Hashed piece by piece so that a large model is never encoded
/// whole a second time.
pub fn graph_hash(model: &ModelProto) -> String {
    let mut h = Sha256::new();
    for opset in &model.opset_import {
        h.update(opset.encode_length_delimited_to_vec());
    }
    if let Some(g) = &model.graph {
        for node in &g.node {
            h.update(node.encode_length_delimited_to_vec());
        }
        for tensor in &g.initializer {
            h.update(tensor.encode_length_delimited_to_vec());
        }
        for value in g.input.iter().chain(&g.output) {
            h.update(value.encode_length_delimited_to_vec());
        }
    }
    hex(&h.finalize())
}

/// Below this size an ONNX file is read again for the external-data files it names (a file
/// that keeps its weights outside is small; one that is not holds them inline).
const EXTERNAL_DATA_SCAN_LIMIT: u64 = 256 << 20;

/// SHA-256 of an ONNX file's bytes and of every external-data file it names (the weights of a
/// large model live beside the graph, and two models' graphs could otherwise hash alike), first
/// 16 hex digits.
pub(crate) fn file_hash(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    hash_file(path, &mut h)?;
    if std::fs::metadata(path)?.len() < EXTERNAL_DATA_SCAN_LIMIT
        && let Ok(model) = ModelProto::decode(std::fs::read(path)?.as_slice())
    {
        let mut locations: Vec<String> = model
            .graph
            .iter()
            .flat_map(|g| &g.initializer)
            .flat_map(|t| &t.external_data)
            .filter(|e| e.key == "location")
            .map(|e| e.value.clone())
            .collect();
        locations.sort();
        locations.dedup();
        let dir = path.parent().unwrap_or(Path::new("."));
        for location in locations {
            h.update((location.len() as u64).to_le_bytes());
            h.update(location.as_bytes());
            hash_file(&dir.join(&location), &mut h)?;
        }
    }
    Ok(hex(&h.finalize()))
}

fn hash_file(path: &Path, h: &mut Sha256) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        h.update(chunk);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(HASH_HEX_DIGITS);
    s
}
