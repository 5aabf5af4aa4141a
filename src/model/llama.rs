//! Llama decoder (Llama 2/3/3.1/3.2, SmolLM2, TinyLlama …), following
//! Hugging Face `transformers`' `modeling_llama.py` and llama.cpp's GGUF
//! layout: pre-norm blocks of grouped-query attention with rotary positions
//! and a SwiGLU MLP.
//!
//! Weights are immutable; per-sequence state lives in a [`Cache`] passed to
//! [`Llama::forward`], so one `Arc<Llama>` can serve many sequences. Dense
//! and quantized checkpoints share this one architecture: every projection is
//! a [`Linear`].

use candle_core::{DType, Device, Tensor};

use super::config::Config;
use super::kv_cache::LayerKv;
use super::linear::Linear;
use super::rope::RopeTables;
use super::weights::{EmbeddingTable, Weights};
use crate::error::{Error, Result};
use crate::lora::{Adapter, AdapterError, LoraDelta, LLAMA_MODULES};

/// Which positions to return logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position: shape `(batch, vocab)`. What decoding needs.
    Last,
    /// Every position: shape `(batch, seq, vocab)`. What scoring needs.
    All,
    /// The last `n` positions (at most `seq`): shape `(batch, n, vocab)`.
    /// What training on an answer after a prompt needs.
    Tail(usize),
}

/// Per-sequence attention state: keys and values of every layer for the
/// positions seen so far.
#[derive(Debug, Clone)]
pub struct Cache {
    layers: Vec<LayerKv>,
    len: usize,
}

impl Cache {
    /// An empty cache for `model`.
    pub fn new(model: &Llama) -> Self {
        Self::with_layers(model, LayerKv::default)
    }

    /// An empty cache for `model` through which gradients flow (see
    /// [`LayerKv::tracked`]): a prompt run once into it can be cloned and
    /// continued by several answers, each backpropagating into the prompt.
    pub fn tracked(model: &Llama) -> Self {
        Self::with_layers(model, LayerKv::tracked)
    }

    fn with_layers(model: &Llama, layer: fn() -> LayerKv) -> Self {
        Self {
            layers: (0..model.cfg.num_layers).map(|_| layer()).collect(),
            len: 0,
        }
    }

    /// Every layer's keys and values, `(batch, kv_heads, positions,
    /// head_dim)` each; empty when nothing has been fed.
    pub fn layer_tensors(&self) -> Result<Vec<(Tensor, Tensor)>> {
        let mut out = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            match l.tensors()? {
                Some(kv) => out.push(kv),
                None => return Ok(Vec::new()),
            }
        }
        Ok(out)
    }

    /// A tracked cache (see [`Cache::tracked`]) for `model` holding
    /// `layers` (one `(keys, values)` pair per layer, as
    /// [`Cache::layer_tensors`] gives; none for an empty cache) as its
    /// first positions.
    pub fn tracked_from(model: &Llama, layers: Vec<(Tensor, Tensor)>) -> Result<Self> {
        if layers.is_empty() {
            return Ok(Self::tracked(model));
        }
        if layers.len() != model.cfg.num_layers {
            return Err(Error::invalid(
                "cache",
                format!(
                    "{} layers of keys and values for a model of {}",
                    layers.len(),
                    model.cfg.num_layers
                ),
            ));
        }
        let len = layers[0].0.dim(2)?;
        Ok(Self {
            layers: layers
                .into_iter()
                .map(|(k, v)| LayerKv::tracked_from(k, v))
                .collect::<Result<_>>()?,
            len,
        })
    }

    /// Number of positions already in the cache (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keeps only the first `len` positions (taking back the rest), so the
    /// next token is fed at position `len`.
    pub fn truncate(&mut self, len: usize) {
        for l in &mut self.layers {
            l.truncate(len);
        }
        self.len = self.len.min(len);
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(w: &Weights, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.tensor("weight", &[size])?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(if pass.differentiable {
            candle_nn::ops::rms_norm_slow(&x, &self.weight, self.eps)?
        } else {
            candle_nn::ops::rms_norm(&x, &self.weight, self.eps)?
        })
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    interleaved: bool,
    /// A decode step's attention through [`super::attention`].
    fused_decode: bool,
}

impl Attention {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let b = cfg.attention_bias;
        Ok(Self {
            q_proj: w.linear("q_proj", cfg.num_heads * hd, h, b)?,
            k_proj: w.linear("k_proj", cfg.num_kv_heads * hd, h, b)?,
            v_proj: w.linear("v_proj", cfg.num_kv_heads * hd, h, b)?,
            o_proj: w.linear("o_proj", h, cfg.num_heads * hd, b)?,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: hd,
            interleaved: cfg.rope_interleaved,
            fused_decode: w.fast_kernels(),
        })
    }

    /// `x`: `(b, seq, hidden)`; `pos`: position of the first row; `mask`:
    /// additive `(seq, pos + seq)` or `None` for a single row.
    fn forward(
        &self,
        x: &Tensor,
        pos: usize,
        rope: &RopeTables,
        mask: Option<&Tensor>,
        kv: Option<&mut LayerKv>,
        pass: Pass,
    ) -> Result<Tensor> {
        let (b, seq, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self
            .q_proj
            .forward_pass(x, pass)?
            .reshape((b, seq, nh, hd))?
            .transpose(1, 2)?;
        let k = self
            .k_proj
            .forward_pass(x, pass)?
            .reshape((b, seq, nkv, hd))?
            .transpose(1, 2)?;
        let v = self
            .v_proj
            .forward_pass(x, pass)?
            .reshape((b, seq, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let cos = rope.cos.narrow(0, pos, seq)?;
        let sin = rope.sin.narrow(0, pos, seq)?;
        let rotate = |t: Tensor| -> Result<Tensor> {
            let t = t.contiguous()?;
            Ok(match (self.interleaved, pass.differentiable) {
                (true, false) => candle_nn::rotary_emb::rope_i(&t, &cos, &sin)?,
                (false, false) => candle_nn::rotary_emb::rope(&t, &cos, &sin)?,
                (true, true) => candle_nn::rotary_emb::rope_i_slow(&t, &cos, &sin)?,
                (false, true) => candle_nn::rotary_emb::rope_slow(&t, &cos, &sin)?,
            })
        };
        let q = rotate(q)?;
        let k = rotate(k)?;
        let (k, v) = match kv {
            Some(cache) => cache.append(&k, &v)?,
            None => (k, v),
        };
        let kv_len = k.dim(2)?;
        // Grouped-query attention without copying K/V: the `n_rep` query heads
        // that share one KV head are stacked along the row axis.
        let n_rep = nh / nkv;
        let q = q.reshape((b, nkv, n_rep * seq, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        if self.fused_decode
            && seq == 1
            && mask.is_none()
            && !pass.differentiable
            && super::attention::runs_here(&q, &k)
        {
            let y = super::attention::attend_one_position(&q, &k, &v, scale as f32)?.reshape((
                b,
                seq,
                nh * hd,
            ))?;
            return self.o_proj.forward_pass(&y, pass);
        }
        if pass.differentiable && super::causal_attention::runs_here(&q, &k) {
            // Training: no score matrix kept for the backward pass (the
            // mask is the causal one this op applies).
            let y = super::causal_attention::causal_attention(&q, &k, &v, seq, scale as f32)?;
            let y = y
                .reshape((b, nh, seq, hd))?
                .transpose(1, 2)?
                .reshape((b, seq, nh * hd))?;
            return self.o_proj.forward_pass(&y, pass);
        }
        // Scaling the queries, not the scores: one score-sized tensor less.
        let att = (q * scale)?.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        let att = match mask {
            Some(m) => att
                .reshape((b, nkv, n_rep, seq, kv_len))?
                .broadcast_add(m)?
                .reshape((b, nkv, n_rep * seq, kv_len))?,
            None => att,
        };
        let att = if pass.differentiable {
            super::softmax::softmax_last_dim_trainable(&att)?
        } else {
            candle_nn::ops::softmax_last_dim(&att)?
        }
        .to_dtype(v.dtype())?;
        let y = att.matmul(&v)?; // (b, nkv, n_rep*seq, hd)
        let y = y
            .reshape((b, nh, seq, hd))?
            .transpose(1, 2)?
            .reshape((b, seq, nh * hd))?;
        self.o_proj.forward_pass(&y, pass)
    }
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let (h, i, b) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: w.linear("gate_proj", i, h, b)?,
            up_proj: w.linear("up_proj", i, h, b)?,
            down_proj: w.linear("down_proj", h, i, b)?,
        })
    }

    fn forward(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward_pass(x, pass)?)?;
        let up = self.up_proj.forward_pass(x, pass)?;
        self.down_proj.forward_pass(&(gate * up)?, pass)
    }
}

struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::load(
                &w.pp("input_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            self_attn: Attention::load(&w.pp("self_attn"), cfg)?,
            post_attention_layernorm: RmsNorm::load(
                &w.pp("post_attention_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            mlp: Mlp::load(&w.pp("mlp"), cfg)?,
        })
    }
}

/// A Llama-architecture causal language model.
pub struct Llama {
    embed_tokens: EmbeddingTable,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RopeTables,
    cfg: Config,
    dtype: DType,
    device: Device,
    /// Adapters attached for unmerged use (slots `0..adapters`).
    adapters: usize,
    /// Whether forward passes use only operations with gradients.
    differentiable: bool,
}

impl Linear {
    /// The layer under `pass`: the frozen-weight path when training.
    fn forward_pass(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        if pass.differentiable {
            self.forward_frozen(x, pass.adapter)
        } else {
            self.forward_with(x, pass.adapter)
        }
    }
}

/// What one forward pass applies, handed to every layer.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// The adapter slot (`None`: the base weights).
    adapter: Option<usize>,
    /// Gradient-capable kernels instead of the fused inference ones.
    differentiable: bool,
}

impl Llama {
    /// Builds the model from checkpoint `w` (Hugging Face tensor names).
    pub fn load(w: &Weights, cfg: Config) -> Result<Self> {
        let _span = tracing::info_span!("load_model").entered();
        let m = w.pp("model");
        let (embed_tokens, lm_head) = if cfg.tie_word_embeddings || !w.contains("lm_head.weight") {
            m.tied_embedding_and_head("embed_tokens", cfg.vocab_size, cfg.hidden_size)?
        } else {
            (
                m.embedding("embed_tokens", cfg.vocab_size, cfg.hidden_size)?,
                w.linear("lm_head", cfg.vocab_size, cfg.hidden_size, false)?,
            )
        };
        let layers = (0..cfg.num_layers)
            .map(|i| Block::load(&m.pp("layers").pp(i), &cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(&m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        let dtype = w.dtype();
        let device = w.device();
        let rope = RopeTables::new(&cfg, dtype, &device)?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            cfg,
            dtype,
            device,
            adapters: 0,
            differentiable: false,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The activation dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The GGML type of the projection weights (`None` when dense).
    pub fn weight_type(&self) -> Option<candle_core::quantized::GgmlDType> {
        self.layers
            .first()
            .and_then(|b| b.self_attn.q_proj.quantized_dtype())
    }

    /// Bytes of every projection weight and the output head: what one
    /// decode step reads from memory, the KV cache and one embedding row
    /// aside.
    pub fn weight_bytes(&self) -> usize {
        let blocks: usize = self
            .layers
            .iter()
            .map(|b| {
                let (a, m) = (&b.self_attn, &b.mlp);
                [
                    &a.q_proj,
                    &a.k_proj,
                    &a.v_proj,
                    &a.o_proj,
                    &m.gate_proj,
                    &m.up_proj,
                    &m.down_proj,
                ]
                .iter()
                .map(|l| l.weight_bytes())
                .sum::<usize>()
            })
            .sum();
        blocks + self.lm_head.weight_bytes()
    }

    /// Runs `ids` (`(batch, seq)`, u32) from position `cache.len()` and
    /// appends their keys/values to `cache`. Without a cache, the sequence
    /// starts at position 0 and nothing is kept. Returns f32 logits.
    pub fn forward(
        &self,
        ids: &Tensor,
        cache: Option<&mut Cache>,
        logits: Logits,
    ) -> Result<Tensor> {
        self.forward_with(ids, cache, logits, None)
    }

    /// Makes forward passes use only operations that backpropagate (RMS
    /// norm, rotary embedding and softmax written out instead of fused
    /// kernels): what training needs; slower, same results to float
    /// precision.
    pub fn set_differentiable(&mut self, on: bool) {
        self.differentiable = on;
    }

    /// Makes every projection dense f32 (dequantizing quantized ones), so
    /// that gradients flow through the whole network. Training needs it;
    /// memory grows to 4 bytes a weight.
    pub fn make_dense(&mut self) -> Result<()> {
        for block in &mut self.layers {
            let a = &mut block.self_attn;
            let m = &mut block.mlp;
            for l in [
                &mut a.q_proj,
                &mut a.k_proj,
                &mut a.v_proj,
                &mut a.o_proj,
                &mut m.gate_proj,
                &mut m.up_proj,
                &mut m.down_proj,
            ] {
                l.make_dense()?;
            }
        }
        self.lm_head.make_dense()
    }

    /// The module paths (PEFT names) of every projection whose name is in
    /// `names` (`q_proj`, `lm_head`, …), with their (out, in) shapes.
    pub fn projections(&self, names: &[&str]) -> Vec<(String, (usize, usize))> {
        let mut out = Vec::new();
        for (i, block) in self.layers.iter().enumerate() {
            let a = &block.self_attn;
            let m = &block.mlp;
            for (group, name, l) in [
                ("self_attn", "q_proj", &a.q_proj),
                ("self_attn", "k_proj", &a.k_proj),
                ("self_attn", "v_proj", &a.v_proj),
                ("self_attn", "o_proj", &a.o_proj),
                ("mlp", "gate_proj", &m.gate_proj),
                ("mlp", "up_proj", &m.up_proj),
                ("mlp", "down_proj", &m.down_proj),
            ] {
                if names.contains(&name) {
                    out.push((
                        format!("model.layers.{i}.{group}.{name}"),
                        (l.out_features(), l.in_features()),
                    ));
                }
            }
        }
        if names.contains(&"lm_head") {
            out.push((
                "lm_head".into(),
                (self.lm_head.out_features(), self.lm_head.in_features()),
            ));
        }
        out
    }

    /// Adapters attached so far (slots `0..n`).
    pub fn adapter_count(&self) -> usize {
        self.adapters
    }

    /// Attaches `adapter` for unmerged use and returns its slot, which
    /// [`Llama::forward_with`] takes. Every delta must name a module of
    /// this model and have its shape.
    pub fn attach_adapter(&mut self, adapter: &Adapter) -> Result<usize> {
        let slot = self.adapters;
        let (dtype, device) = (self.dtype, self.device.clone());
        self.for_each_adapted(adapter, |linear, delta| {
            linear
                .set_adapter(slot, delta.to(dtype, &device)?)
                .map_err(|kind| Error::Adapter {
                    path: adapter.dir.clone(),
                    kind,
                })
        })?;
        self.adapters += 1;
        Ok(slot)
    }

    /// Adds `adapter`'s deltas into the weights for good (quantized
    /// projections it touches become dense f32).
    pub fn merge_adapter(&mut self, adapter: &Adapter) -> Result<()> {
        if matches!(self.embed_tokens, EmbeddingTable::TiedToHead)
            && adapter.deltas.contains_key("lm_head")
        {
            // The merge changes the head, not the embeddings: they part.
            self.embed_tokens = self.lm_head.embedding_table()?;
        }
        self.for_each_adapted(adapter, |linear, delta| linear.merge(delta))
    }

    /// Checks every delta of `adapter` against its module, then calls `f`
    /// on each (module, delta) pair.
    fn for_each_adapted(
        &mut self,
        adapter: &Adapter,
        mut f: impl FnMut(&mut Linear, &LoraDelta) -> Result<()>,
    ) -> Result<()> {
        let fail = |kind| Error::Adapter {
            path: adapter.dir.clone(),
            kind,
        };
        let layers = self.layers.len();
        let mut targets = Vec::with_capacity(adapter.deltas.len());
        for (path, delta) in &adapter.deltas {
            let linear = self.module(path).ok_or_else(|| {
                fail(AdapterError::UnknownTargetModule {
                    module: path.clone(),
                    known: format!("{} in layers 0..{layers}", LLAMA_MODULES.join(", ")),
                })
            })?;
            linear.check_fits(delta).map_err(|kind| match kind {
                AdapterError::ShapeMismatch {
                    expected, found, ..
                } => fail(AdapterError::ShapeMismatch {
                    tensor: format!("{path} (B·A)"),
                    expected,
                    found,
                }),
                other => fail(other),
            })?;
            targets.push((path, delta));
        }
        for (path, delta) in targets {
            let linear = self.module(path).expect("checked above");
            f(linear, delta)?;
        }
        Ok(())
    }

    /// The projection at PEFT module path `path`.
    fn module(&mut self, path: &str) -> Option<&mut Linear> {
        if path == "lm_head" {
            return Some(&mut self.lm_head);
        }
        let parts: Vec<&str> = path.split('.').collect();
        let ["model", "layers", i, group, name] = parts.as_slice() else {
            return None;
        };
        let block = self.layers.get_mut(i.parse::<usize>().ok()?)?;
        let a = &mut block.self_attn;
        let m = &mut block.mlp;
        match (*group, *name) {
            ("self_attn", "q_proj") => Some(&mut a.q_proj),
            ("self_attn", "k_proj") => Some(&mut a.k_proj),
            ("self_attn", "v_proj") => Some(&mut a.v_proj),
            ("self_attn", "o_proj") => Some(&mut a.o_proj),
            ("mlp", "gate_proj") => Some(&mut m.gate_proj),
            ("mlp", "up_proj") => Some(&mut m.up_proj),
            ("mlp", "down_proj") => Some(&mut m.down_proj),
            _ => None,
        }
    }

    /// [`Llama::forward`] with the adapter in slot `adapter` applied
    /// (`None`: the base model).
    pub fn forward_with(
        &self,
        ids: &Tensor,
        cache: Option<&mut Cache>,
        logits: Logits,
        adapter: Option<usize>,
    ) -> Result<Tensor> {
        if let Some(slot) = adapter.filter(|&s| s >= self.adapters) {
            return Err(Error::invalid(
                "adapter",
                format!("no adapter in slot {slot} ({} attached)", self.adapters),
            ));
        }
        let pass = Pass {
            adapter,
            differentiable: self.differentiable,
        };
        let (b, seq) = ids.dims2()?;
        let pos = cache.as_ref().map(|c| c.len).unwrap_or(0);
        if seq == 0 {
            return Err(Error::invalid("input", "no tokens to run"));
        }
        if pos + seq > self.cfg.context_length {
            return Err(Error::PromptTooLong {
                prompt_tokens: pos + seq,
                context: self.cfg.context_length,
                reserved: 0,
            });
        }
        let _span = tracing::trace_span!("forward", seq, pos).entered();
        let mut x = match &self.embed_tokens {
            EmbeddingTable::Dense(w) => {
                let flat = ids.flatten_all()?;
                w.index_select(&flat, 0)?
                    .reshape((b, seq, self.cfg.hidden_size))?
            }
            EmbeddingTable::Quantized(q) => q.embedding(ids)?.to_dtype(self.dtype)?,
            EmbeddingTable::TiedToHead => self.lm_head.embedding(ids)?.to_dtype(self.dtype)?,
        };
        let mask = if seq > 1 {
            Some(causal_mask(seq, pos, &self.device)?)
        } else {
            None
        };
        let mut kvs: Vec<Option<&mut LayerKv>> = match cache {
            Some(c) => {
                c.len += seq;
                c.layers.iter_mut().map(Some).collect()
            }
            None => (0..self.layers.len()).map(|_| None).collect(),
        };
        for (layer, kv) in self.layers.iter().zip(kvs.iter_mut()) {
            let _span = tracing::trace_span!("block").entered();
            let h = layer.input_layernorm.forward(&x, pass)?;
            let h = layer.self_attn.forward(
                &h,
                pos,
                &self.rope,
                mask.as_ref(),
                kv.as_deref_mut(),
                pass,
            )?;
            x = (x + h)?;
            let h = layer.post_attention_layernorm.forward(&x, pass)?;
            x = (x + layer.mlp.forward(&h, pass)?)?;
        }
        let x = match logits {
            Logits::Last => x.narrow(1, seq - 1, 1)?,
            Logits::All => x,
            Logits::Tail(n) => x.narrow(1, seq - n.clamp(1, seq), n.clamp(1, seq))?,
        };
        let x = self.norm.forward(&x, pass)?;
        let out = self
            .lm_head
            .forward_with(&x, adapter)?
            .to_dtype(DType::F32)?;
        Ok(match logits {
            Logits::Last => out.squeeze(1)?,
            Logits::All | Logits::Tail(_) => out,
        })
    }
}

/// Additive causal mask of shape `(seq, pos + seq)`: 0 where query `i`
/// (at absolute position `pos + i`) may attend, −∞ elsewhere.
///
/// ```text
/// pos = 2, seq = 3      keys: 0  1 | 2  3  4
///   query at 2               0  0 | 0 -∞ -∞
///   query at 3               0  0 | 0  0 -∞
///   query at 4               0  0 | 0  0  0
/// ```
pub fn causal_mask(seq: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let kv_len = pos + seq;
    let data: Vec<f32> = (0..seq)
        .flat_map(|i| (0..kv_len).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (seq, kv_len), device)?)
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_blocks_future_positions_only() {
        let m: Vec<Vec<f32>> = causal_mask(3, 2, &Device::Cpu).unwrap().to_vec2().unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(
            m,
            vec![
                vec![0., 0., 0., inf, inf],
                vec![0., 0., 0., 0., inf],
                vec![0.; 5]
            ]
        );
    }
}
