//! A small writer of ONNX graphs over tract's generated protobuf types: constants, nodes and
//! typed inputs and outputs, with fresh names.

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;

use super::BackboneError;

/// ONNX opset the portable backbone graph targets (LayerNormalization is opset 17; TensorRT 10
/// and ONNX Runtime read it).
pub const OPSET: i64 = 17;
/// IR version 8 is what opset 17 needs; opset 23 needs IR 10.
fn ir_version(opset: i64) -> i64 {
    if opset >= 23 { 10 } else { 8 }
}
const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;

/// The element types the backbone's graphs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// Signed 8-bit integer (quantised weights and activations).
    I8,
}

impl ElemType {
    /// ONNX's `TensorProto.DataType` code.
    pub fn code(self) -> i64 {
        use pb::tensor_proto::DataType as T;
        (match self {
            ElemType::F32 => T::Float,
            ElemType::F16 => T::Float16,
            ElemType::I8 => T::Int8,
        }) as i64
    }
}

/// An attribute value for [`GraphWriter::node`].
pub enum Attr<'a> {
    /// An integer.
    Int(i64),
    /// A list of integers.
    Ints(&'a [i64]),
    /// A float.
    Float(f32),
    /// A string.
    Str(&'a str),
}

/// One dimension of a graph input or output.
#[derive(Clone, Debug)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named symbolic size, e.g. the batch `N`.
    Symbol(String),
}

/// Accumulates nodes and initializers, then becomes a `ModelProto`.
#[derive(Default)]
pub struct GraphWriter {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    next_id: usize,
}

impl GraphWriter {
    fn fresh(&mut self, stem: &str) -> String {
        self.next_id += 1;
        format!("{stem}_{}", self.next_id)
    }

    /// Adds an f32 constant of the given shape; returns its name.
    pub fn constant(&mut self, stem: &str, dims: &[usize], values: &[f32]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a float constant stored as `ty` (f32 or f16, rounded to nearest); returns its name.
    pub fn constant_as(
        &mut self,
        ty: ElemType,
        stem: &str,
        dims: &[usize],
        values: &[f32],
    ) -> String {
        if ty != ElemType::F16 {
            return self.constant(stem, dims, values);
        }
        let name = self.fresh(stem);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: ElemType::F16.code() as i32,
            raw_data: values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            ..Default::default()
        });
        name
    }

    /// Adds an i8 constant (quantised weights, zero points); returns its name.
    pub fn constant_i8(&mut self, stem: &str, dims: &[usize], values: &[i8]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: ElemType::I8.code() as i32,
            raw_data: values.iter().map(|&v| v as u8).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds an i64 constant (shapes, axes, indices); an empty `dims` makes a scalar.
    pub fn constant_i64(&mut self, stem: &str, dims: &[usize], values: &[i64]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: INT64,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.node_with_outputs(op, inputs, attrs, std::slice::from_ref(&out));
        out
    }

    /// Adds a node with several outputs (e.g. `Split`); returns their names.
    pub fn node_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        outputs: usize,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&op.to_ascii_lowercase()))
            .collect();
        self.node_with_outputs(op, inputs, attrs, &outs);
        outs
    }

    fn node_with_outputs(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        outputs: &[String],
    ) {
        let name = self.fresh(&format!("{op}_node"));
        let attribute = attrs
            .iter()
            .map(|(attr_name, value)| {
                use pb::attribute_proto::AttributeType as T;
                let mut a = pb::AttributeProto {
                    name: (*attr_name).to_string(),
                    ..Default::default()
                };
                match value {
                    Attr::Int(i) => {
                        a.r#type = T::Int as i32;
                        a.i = *i;
                    }
                    Attr::Ints(v) => {
                        a.r#type = T::Ints as i32;
                        a.ints = v.to_vec();
                    }
                    Attr::Float(f) => {
                        a.r#type = T::Float as i32;
                        a.f = *f;
                    }
                    Attr::Str(s) => {
                        a.r#type = T::String as i32;
                        a.s = s.as_bytes().to_vec();
                    }
                }
                a
            })
            .collect();
        self.nodes.push(pb::NodeProto {
            name,
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            attribute,
            ..Default::default()
        });
    }

    /// Declares a graph input of type f32.
    pub fn input(&mut self, name: &str, dims: &[Dim]) {
        self.inputs.push(value_info(name, dims));
    }

    /// Declares `value` as a graph output of type f32 called `name` (through an `Identity`, so the
    /// output's name is the one given).
    pub fn output(&mut self, name: &str, value: &str, dims: &[Dim]) {
        self.node_with_outputs("Identity", &[value], &[], &[name.to_string()]);
        self.outputs.push(value_info(name, dims));
    }

    /// Declares `value` as an f32 graph output called `name` whose shape the reader infers (the
    /// calibration taps).
    pub fn output_unshaped(&mut self, name: &str, value: &str) {
        self.node_with_outputs("Identity", &[value], &[], &[name.to_string()]);
        let mut info = value_info(name, &[]);
        if let Some(pb::type_proto::Value::TensorType(t)) =
            info.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape = None;
        }
        self.outputs.push(info);
    }

    /// The finished model, with its producer and free-form metadata.
    pub fn into_model(
        mut self,
        graph_name: &str,
        opset: i64,
        metadata: &[(&str, String)],
    ) -> pb::ModelProto {
        // Constants made for a form the builder did not take are not written.
        let used: std::collections::HashSet<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .collect();
        let initializers: Vec<pb::TensorProto> = std::mem::take(&mut self.initializers)
            .into_iter()
            .filter(|t| used.contains(t.name.as_str()))
            .collect();
        pb::ModelProto {
            ir_version: ir_version(opset),
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "dinoedge".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(pb::GraphProto {
                name: graph_name.into(),
                node: self.nodes,
                initializer: initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: (*k).into(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

fn value_info(name: &str, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Symbol(s) => Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Moves the raw data of every initializer of at least `min_bytes` out of `model` into one blob,
/// to be written beside the `.onnx` file as `location` (a file name, relative to the model's
/// folder): ONNX's external-data form, needed past protobuf's 2 GB limit (ViT-H+/16 in f32 is
/// 3.4 GB). Returns the blob.
pub fn externalize(model: &mut pb::ModelProto, location: &str, min_bytes: usize) -> Vec<u8> {
    let mut blob = Vec::new();
    let Some(graph) = model.graph.as_mut() else {
        return blob;
    };
    for t in &mut graph.initializer {
        if t.raw_data.len() < min_bytes {
            continue;
        }
        // Offsets aligned to 4 KiB so that readers may map tensors straight from the file.
        blob.resize(blob.len().next_multiple_of(4096), 0);
        let offset = blob.len();
        blob.extend_from_slice(&t.raw_data);
        let entry = |key: &str, value: String| pb::StringStringEntryProto {
            key: key.into(),
            value,
        };
        t.external_data = vec![
            entry("location", location.into()),
            entry("offset", offset.to_string()),
            entry("length", t.raw_data.len().to_string()),
        ];
        t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
        t.raw_data = Vec::new();
    }
    blob
}

/// Writes `bytes` to `path` whole or not at all (through a `.partial` file renamed into place).
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), BackboneError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&partial);
            BackboneError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
}

/// Writes `model` to `path`, each file whole or not at all. From `external_from` bytes of
/// initializers (0: always) the weights go to `<file name>.data` beside it, written first, in
/// ONNX's external-data form, since one protobuf message cannot exceed 2 GB. Returns the bytes
/// written in all.
pub fn write_model(
    model: &pb::ModelProto,
    path: &Path,
    external_from: usize,
) -> Result<u64, BackboneError> {
    let weight_bytes: usize = model
        .graph
        .as_ref()
        .map_or(0, |g| g.initializer.iter().map(|t| t.raw_data.len()).sum());
    let mut written = 0u64;
    let bytes = if weight_bytes >= external_from {
        let name = path
            .file_name()
            .map(|n| format!("{}.data", n.to_string_lossy()))
            .ok_or_else(|| BackboneError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
            })?;
        let mut model = model.clone();
        let blob = externalize(&mut model, &name, 1024);
        write_whole(&path.with_file_name(&name), &blob)?;
        written += blob.len() as u64;
        to_bytes(&model)
    } else {
        to_bytes(model)
    };
    write_whole(path, &bytes)?;
    Ok(written + bytes.len() as u64)
}

/// Serialises a model to ONNX bytes.
pub fn to_bytes(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
