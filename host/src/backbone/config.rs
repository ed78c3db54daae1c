//! The model's `config.json`, read as transformers writes it for `DINOv3ViTModel`, and the
//! released variants as presets.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BackboneError;

/// A DINOv3 ViT's hyper-parameters: the fields of transformers' `DINOv3ViTConfig` that inference
/// depends on. Unknown fields are kept out; the train-only RoPE augmentations are read and ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dinov3Config {
    /// Always `"dinov3_vit"`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Embedding width D.
    pub hidden_size: usize,
    /// Hidden width of the MLP or SwiGLU feed-forward.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block; D / heads is the head width.
    pub num_attention_heads: usize,
    /// `"gelu"` (exact, erf) for the MLP variants, `"silu"` for SwiGLU.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// LayerNorm epsilon (1e-5 for every released ViT).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// RoPE base: periods are `rope_theta^(4j/Dh)`.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Square patch side in pixels.
    #[serde(default = "default_patch", deserialize_with = "patch_size_from_json")]
    pub patch_size: usize,
    /// Input channels; dinoedge feeds RGB, so 3.
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    /// Learned register ("storage") tokens after CLS; 4 for the released models.
    #[serde(default)]
    pub num_register_tokens: usize,
    /// SwiGLU feed-forward (S+/16, H+/16) instead of the GELU MLP.
    #[serde(default)]
    pub use_gated_mlp: bool,
    /// Query projection bias.
    #[serde(default = "yes")]
    pub query_bias: bool,
    /// Key projection bias (false in every released model).
    #[serde(default)]
    pub key_bias: bool,
    /// Value projection bias.
    #[serde(default = "yes")]
    pub value_bias: bool,
    /// Attention output projection bias.
    #[serde(default = "yes")]
    pub proj_bias: bool,
    /// Feed-forward biases.
    #[serde(default = "yes")]
    pub mlp_bias: bool,
    /// The training image size; informative only, any multiple of the patch size runs.
    #[serde(
        default = "default_image_size",
        deserialize_with = "patch_size_from_json"
    )]
    pub image_size: usize,
    /// LayerScale's initial value (the learned values are in the weights).
    #[serde(default = "default_layerscale")]
    pub layerscale_value: f64,
    /// Architectures list as transformers writes it.
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
}

fn default_model_type() -> String {
    "dinov3_vit".into()
}
fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    100.0
}
fn default_patch() -> usize {
    16
}
fn default_channels() -> usize {
    3
}
fn default_image_size() -> usize {
    224
}
fn default_layerscale() -> f64 {
    1.0
}
fn default_architectures() -> Vec<String> {
    vec!["DINOv3ViTModel".into()]
}
fn yes() -> bool {
    true
}

/// transformers allows `patch_size` and `image_size` to be an int or an `[h, w]` pair; dinoedge
/// supports square ones only.
fn patch_size_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrPair {
        Int(usize),
        Pair([usize; 2]),
    }
    match IntOrPair::deserialize(d)? {
        IntOrPair::Int(n) => Ok(n),
        IntOrPair::Pair([h, w]) if h == w => Ok(h),
        IntOrPair::Pair([h, w]) => Err(serde::de::Error::custom(format!(
            "non-square size [{h}, {w}] is not supported"
        ))),
    }
}

/// The released DINOv3 ViT variants that dinoedge knows by name (not ConvNeXt, not 7B).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// ViT-S/16: D 384, 12 blocks, 6 heads, GELU MLP (21.6 M parameters).
    Vits16,
    /// ViT-S+/16: D 384, 12 blocks, 6 heads, SwiGLU (28.7 M).
    Vits16plus,
    /// ViT-B/16: D 768, 12 blocks, 12 heads, GELU MLP (85.7 M).
    Vitb16,
    /// ViT-L/16: D 1024, 24 blocks, 16 heads, GELU MLP (300 M).
    Vitl16,
    /// ViT-H+/16: D 1280, 32 blocks, 20 heads, SwiGLU (840 M).
    Vith16plus,
}

impl Arch {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Vits16 => "vits16",
            Arch::Vits16plus => "vits16plus",
            Arch::Vitb16 => "vitb16",
            Arch::Vitl16 => "vitl16",
            Arch::Vith16plus => "vith16plus",
        }
    }

    /// The configuration of the released checkpoint of this variant.
    pub fn config(self) -> Dinov3Config {
        let (d, ffn, layers, heads, gated) = match self {
            Arch::Vits16 => (384, 1536, 12, 6, false),
            Arch::Vits16plus => (384, 1536, 12, 6, true),
            Arch::Vitb16 => (768, 3072, 12, 12, false),
            Arch::Vitl16 => (1024, 4096, 24, 16, false),
            Arch::Vith16plus => (1280, 5120, 32, 20, true),
        };
        Dinov3Config {
            model_type: default_model_type(),
            hidden_size: d,
            intermediate_size: ffn,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            hidden_act: if gated { "silu" } else { "gelu" }.into(),
            layer_norm_eps: 1e-5,
            rope_theta: 100.0,
            patch_size: 16,
            num_channels: 3,
            num_register_tokens: 4,
            use_gated_mlp: gated,
            query_bias: true,
            key_bias: false,
            value_bias: true,
            proj_bias: true,
            mlp_bias: true,
            image_size: 224,
            layerscale_value: 1.0,
            architectures: default_architectures(),
        }
    }

    /// The preset whose shape this configuration has, if any.
    pub fn of(config: &Dinov3Config) -> Option<Arch> {
        [
            Arch::Vits16,
            Arch::Vits16plus,
            Arch::Vitb16,
            Arch::Vitl16,
            Arch::Vith16plus,
        ]
        .into_iter()
        .find(|a| {
            let p = a.config();
            p.hidden_size == config.hidden_size
                && p.intermediate_size == config.intermediate_size
                && p.num_hidden_layers == config.num_hidden_layers
                && p.num_attention_heads == config.num_attention_heads
                && p.use_gated_mlp == config.use_gated_mlp
        })
    }
}

impl Dinov3Config {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, BackboneError> {
        let text = std::fs::read_to_string(path).map_err(|source| BackboneError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Dinov3Config =
            serde_json::from_str(&text).map_err(|e| BackboneError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        config.validate().map_err(|reason| BackboneError::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Tokens before the patches: CLS and the registers.
    pub fn prefix_tokens(&self) -> usize {
        1 + self.num_register_tokens
    }

    /// A short name for reports: the preset's name, or the shape.
    pub fn arch_name(&self) -> String {
        match Arch::of(self) {
            Some(a) => a.name().to_string(),
            None => format!(
                "custom(D{} L{} H{}{})",
                self.hidden_size,
                self.num_hidden_layers,
                self.num_attention_heads,
                if self.use_gated_mlp { " swiglu" } else { "" }
            ),
        }
    }

    /// Checks what the graph builder relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_type != "dinov3_vit" {
            return Err(format!(
                "model_type is {:?}, expected \"dinov3_vit\" (ConvNeXt and other models are not supported)",
                self.model_type
            ));
        }
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return Err(
                "hidden_size, num_attention_heads and num_hidden_layers must be positive".into(),
            );
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(4) {
            return Err(format!(
                "head width {} is not a multiple of 4, which 2D RoPE needs",
                self.head_dim()
            ));
        }
        if self.intermediate_size == 0 {
            return Err("intermediate_size must be positive".into());
        }
        if self.patch_size == 0 {
            return Err("patch_size must be positive".into());
        }
        if self.num_channels != 3 {
            return Err(format!("num_channels is {}, expected 3", self.num_channels));
        }
        let expected_act = if self.use_gated_mlp { "silu" } else { "gelu" };
        if self.hidden_act != expected_act {
            return Err(format!(
                "hidden_act is {:?}; dinoedge supports {:?} with use_gated_mlp = {}",
                self.hidden_act, expected_act, self.use_gated_mlp
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(format!(
                "layer_norm_eps {} is not a positive number",
                self.layer_norm_eps
            ));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return Err(format!(
                "rope_theta {} must be greater than 1",
                self.rope_theta
            ));
        }
        Ok(())
    }
}
