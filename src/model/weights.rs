//! Where weights come from: the one way tensors reach the model.
//!
//! [`Weights`] resolves checkpoint names written in Hugging Face style
//! (`model.layers.0.self_attn.q_proj.weight`) against either safetensors
//! files (through candle's `VarBuilder`, mmapped) or a GGUF file (names
//! mapped to llama.cpp's `blk.0.attn_q.weight`), so the model's `load`
//! functions are written once for both.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::safetensors::Load as _;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;
use crate::error::{candle_message, Error, Result};

/// What to do with GGUF quantization types that have slow CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requantize {
    /// Re-quantize types without a fast CPU kernel (Q5_0, Q5_1, and Q4_1
    /// where this CPU lacks the AVX-512 VNNI decode kernel) to Q8_0 at load
    /// (about 0.4 s for a 135M model). Default.
    Auto,
    /// Keep every tensor exactly as stored.
    Never,
    /// Re-quantize every quantized matrix to this type.
    To(GgmlDType),
}

/// Options for loading a GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufOptions {
    /// Re-quantization policy.
    pub requantize: Requantize,
    /// Use this crate's CPU kernels where candle's quantized ones are slow
    /// (see [`Linear::from_quantized`]); off: candle's kernels only.
    pub fast_kernels: bool,
}

impl Default for GgufOptions {
    fn default() -> Self {
        Self {
            requantize: Requantize::Auto,
            fast_kernels: true,
        }
    }
}

/// The token-embedding table: dense, or quantized rows looked up directly.
#[derive(Debug, Clone)]
pub enum EmbeddingTable {
    /// A dense `(vocab, hidden)` tensor.
    Dense(Tensor),
    /// A quantized `(vocab, hidden)` tensor.
    Quantized(Arc<QTensor>),
    /// The rows of the output head's weight, which is the same tensor
    /// (tied embeddings) held once, as the block kernel's tiles (see
    /// [`Linear::embedding`]).
    TiedToHead,
}

/// One further file of a split GGUF: its tensor index and its reader.
pub struct GgufPart {
    /// The parsed header.
    pub content: gguf_file::Content,
    /// The open file.
    pub file: Mutex<File>,
    /// Where it is.
    pub path: PathBuf,
}

enum Backend {
    Safetensors {
        vb: VarBuilder<'static>,
        path: PathBuf,
        /// The file holding each tensor, for errors (sharded checkpoints).
        holders: HashMap<String, PathBuf>,
        /// The configuration file the expected shapes come from, for errors.
        config: Option<PathBuf>,
        /// When quantizing at load: the files mapped once more, read through
        /// this mapping so that each tensor's pages can be dropped as soon
        /// as it is copied (see [`release_pages`]).
        own: Option<candle_core::safetensors::MmapedSafetensors>,
        /// Projections and embeddings quantized to this type as they load.
        quantize: Option<GgmlDType>,
        /// What that quantization did: tensors, their bytes as f32, after.
        quantized: Mutex<(usize, usize, usize)>,
    },
    Gguf {
        content: gguf_file::Content,
        file: Mutex<File>,
        path: PathBuf,
        /// The further files of a split GGUF (the first is above).
        parts: Vec<GgufPart>,
        device: Device,
        options: GgufOptions,
        requantized: Mutex<Vec<(GgmlDType, GgmlDType)>>,
    },
    /// Random values made on request (benchmarks of a shape, no file).
    Random {
        dtype: DType,
        device: Device,
        quantize: Option<GgmlDType>,
        seed: u64,
        path: PathBuf,
    },
}

/// A view of a checkpoint under a name prefix (`vb.pp("self_attn")`-style).
#[derive(Clone)]
pub struct Weights {
    backend: Arc<Backend>,
    prefix: String,
}

impl Weights {
    /// Memory-maps safetensors files (one, or the shards of an index).
    pub fn from_safetensors(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        Self::mapped(files, dtype, device, None)
    }

    /// Safetensors `files` loaded in f32 with every projection and the
    /// embeddings quantized to `quantize` as they are read, one tensor at a
    /// time (a tensor whose rows do not fit the type's blocks stays dense).
    pub fn from_safetensors_quantized(
        files: &[PathBuf],
        device: &Device,
        quantize: GgmlDType,
    ) -> Result<Self> {
        Self::mapped(files, DType::F32, device, Some(quantize))
    }

    fn mapped(
        files: &[PathBuf],
        dtype: DType,
        device: &Device,
        quantize: Option<GgmlDType>,
    ) -> Result<Self> {
        let path = files.first().cloned().unwrap_or_default();
        for f in files {
            if !f.is_file() {
                return Err(Error::model(f, "safetensors file not found"));
            }
        }
        let unreadable = |f: &Path, e: candle_core::Error| {
            Error::model(
                f,
                format!("cannot read safetensors: {}", candle_message(&e)),
            )
        };
        // Each file on its own first, so that a broken shard is the one
        // named, and each tensor's file is known for later errors.
        let mut holders = HashMap::new();
        for f in files {
            // SAFETY: as below.
            let one = unsafe { candle_core::safetensors::MmapedSafetensors::new(f) }
                .map_err(|e| unreadable(f, e))?;
            for (name, _) in one.tensors() {
                holders.insert(name, f.clone());
            }
        }
        // SAFETY: the files are mapped read-only; sqlagent never writes them
        // while they are mapped. A file truncated or changed by another process
        // is detected by safetensors' header/length validation.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
            .map_err(|e| unreadable(&path, e))?;
        let own = match quantize {
            // SAFETY: as above.
            Some(_) => Some(
                unsafe { candle_core::safetensors::MmapedSafetensors::multi(files) }
                    .map_err(|e| unreadable(&path, e))?,
            ),
            None => None,
        };
        Ok(Self::safetensors(vb, path, holders, own, quantize))
    }

    fn safetensors(
        vb: VarBuilder<'static>,
        path: PathBuf,
        holders: HashMap<String, PathBuf>,
        own: Option<candle_core::safetensors::MmapedSafetensors>,
        quantize: Option<GgmlDType>,
    ) -> Self {
        Self {
            backend: Arc::new(Backend::Safetensors {
                vb,
                path,
                holders,
                config: None,
                own,
                quantize,
                quantized: Mutex::new((0, 0, 0)),
            }),
            prefix: String::new(),
        }
    }

    /// What quantizing at load did: tensors, their bytes as f32, their
    /// bytes quantized (zeros when nothing was).
    pub fn quantized_at_load(&self) -> (usize, usize, usize) {
        match &*self.backend {
            Backend::Safetensors { quantized, .. } => {
                quantized.lock().map(|q| *q).unwrap_or_default()
            }
            _ => (0, 0, 0),
        }
    }

    /// `w` quantized to the load-time type, when there is one and its rows
    /// fit the type's blocks.
    fn quantize_loaded(&self, w: &Tensor, full: &str) -> Result<Option<QTensor>> {
        let Backend::Safetensors {
            quantize: Some(q),
            quantized,
            ..
        } = &*self.backend
        else {
            return Ok(None);
        };
        let cols = w.dims().last().copied().unwrap_or(0);
        if cols % q.block_size() != 0 {
            return Ok(None);
        }
        let qt = QTensor::quantize(w, *q).map_err(|e| self.err(full, e))?;
        if let Ok(mut counts) = quantized.lock() {
            counts.0 += 1;
            counts.1 += w.elem_count() * 4;
            counts.2 += qt.storage_size_in_bytes();
        }
        Ok(Some(qt))
    }

    /// Wraps an existing `VarBuilder` (random/zero weights in tests, a
    /// trainable `VarMap`); `path` is used in error messages.
    pub fn from_var_builder(vb: VarBuilder<'static>, path: PathBuf) -> Self {
        Self::safetensors(vb, path, HashMap::new(), None, None)
    }

    /// Reads tensors from an opened GGUF file.
    pub fn from_gguf(
        path: &Path,
        content: gguf_file::Content,
        file: File,
        parts: Vec<GgufPart>,
        device: &Device,
        options: GgufOptions,
    ) -> Self {
        Self {
            backend: Arc::new(Backend::Gguf {
                content,
                file: Mutex::new(file),
                path: path.to_path_buf(),
                parts,
                device: device.clone(),
                options,
                requantized: Mutex::new(Vec::new()),
            }),
            prefix: String::new(),
        }
    }

    /// Random weights made as each tensor is asked for: dense in `dtype`,
    /// or, with `quantize`, projections and embeddings quantized as they
    /// are made (one dense tensor alive at a time, so an 8B shape fits
    /// where its dense weights would not). Values are uniform in
    /// ±0.05 (norm weights 1): speed does not depend on them. `label`
    /// names the shape in error messages.
    pub fn random(
        label: &str,
        dtype: DType,
        quantize: Option<GgmlDType>,
        device: &Device,
        seed: u64,
    ) -> Self {
        Self {
            backend: Arc::new(Backend::Random {
                dtype,
                device: device.clone(),
                quantize,
                seed,
                path: PathBuf::from(label),
            }),
            prefix: String::new(),
        }
    }

    /// Whether the model built from these weights uses this crate's CPU
    /// kernels (off only for a GGUF loaded without them, to compare with
    /// candle's own).
    pub fn fast_kernels(&self) -> bool {
        match self.backend.as_ref() {
            Backend::Gguf { options, .. } => options.fast_kernels,
            _ => true,
        }
    }

    /// The same checkpoint, one name level deeper.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            backend: self.backend.clone(),
            prefix,
        }
    }

    /// The dtype activations run in: the safetensors dtype, or f32 for GGUF.
    pub fn dtype(&self) -> DType {
        match &*self.backend {
            Backend::Safetensors { vb, .. } => vb.dtype(),
            Backend::Gguf { .. } => DType::F32,
            Backend::Random {
                dtype, quantize, ..
            } => match quantize {
                Some(_) => DType::F32,
                None => *dtype,
            },
        }
    }

    /// The device tensors are placed on.
    pub fn device(&self) -> Device {
        match &*self.backend {
            Backend::Safetensors { vb, .. } => vb.device().clone(),
            Backend::Gguf { device, .. } | Backend::Random { device, .. } => device.clone(),
        }
    }

    /// The file weights come from.
    pub fn path(&self) -> &Path {
        match &*self.backend {
            Backend::Safetensors { path, .. }
            | Backend::Gguf { path, .. }
            | Backend::Random { path, .. } => path,
        }
    }

    /// Whether tensor `name` (under this prefix) exists.
    pub fn contains(&self, name: &str) -> bool {
        let full = self.full(name);
        match &*self.backend {
            Backend::Safetensors { vb, .. } => vb.contains_tensor(&full),
            Backend::Gguf { content, parts, .. } => gguf_name(&full)
                .map(|g| {
                    content.tensor_infos.contains_key(&g)
                        || parts
                            .iter()
                            .any(|p| p.content.tensor_infos.contains_key(&g))
                })
                .unwrap_or(false),
            // Every tensor the architecture asks for, but no separate
            // output head: random shapes tie it to the embeddings.
            Backend::Random { .. } => !full.starts_with("lm_head"),
        }
    }

    /// Type changes made at load (`(from, to)` pairs, one per tensor).
    pub fn requantized(&self) -> Vec<(GgmlDType, GgmlDType)> {
        match &*self.backend {
            Backend::Gguf { requantized, .. } => {
                requantized.lock().map(|v| v.clone()).unwrap_or_default()
            }
            Backend::Safetensors { .. } | Backend::Random { .. } => Vec::new(),
        }
    }

    /// A dense tensor `name` of `shape`, in the activation dtype.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = self.full(name);
        let t = match &*self.backend {
            Backend::Safetensors {
                own: Some(own), vb, ..
            } if vb.contains_tensor(&full) => {
                let view = own.get(&full).map_err(|e| self.err(&full, e))?;
                let dims = view.shape().to_vec();
                if dims != shape {
                    return Err(self.shape_err(&full, shape, &dims));
                }
                let t = view
                    .load(&Device::Cpu)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_device(&self.device()))
                    .map_err(|e| self.err(&full, e))?;
                release_pages(view.data());
                t
            }
            Backend::Safetensors { vb, .. } => {
                vb.get(shape, &full)
                    .map_err(|e| match unexpected_shape(&e) {
                        Some(got) => self.shape_err(&full, shape, got),
                        None => self.err(&full, e),
                    })?
            }
            Backend::Gguf { device, .. } => {
                let q = self.qtensor(&full, shape)?;
                q.dequantize(device).map_err(|e| self.err(&full, e))?
            }
            Backend::Random { .. } if shape.len() == 1 => {
                Tensor::ones(shape, self.dtype(), &self.device())?
            }
            Backend::Random { .. } => self.random_values(&full, shape, self.dtype())?,
        };
        if t.dims() != shape {
            return Err(self.shape_err(&full, shape, t.dims()));
        }
        Ok(t)
    }

    /// The linear layer `name` (`name.weight`, and `name.bias` when `bias`),
    /// with weight shape `(out, in)`.
    pub fn linear(&self, name: &str, out_dim: usize, in_dim: usize, bias: bool) -> Result<Linear> {
        let lin = self.pp(name);
        let b = if bias {
            Some(lin.tensor("bias", &[out_dim])?)
        } else {
            None
        };
        match &*self.backend {
            Backend::Safetensors { .. } => {
                let w = lin.tensor("weight", &[out_dim, in_dim])?;
                match self.quantize_loaded(&w, &lin.full("weight"))? {
                    Some(q) => Linear::from_quantized(q, b, true),
                    None => Linear::from_dense(w, b),
                }
            }
            Backend::Gguf { options, .. } => {
                let full = lin.full("weight");
                let q = lin.qtensor(&full, &[out_dim, in_dim])?;
                let q = self.maybe_requantize(q, &full)?;
                Linear::from_quantized(q, b, options.fast_kernels)
            }
            Backend::Random { .. } => {
                let full = lin.full("weight");
                match self.random_quantized(&full, out_dim, in_dim)? {
                    Some(q) => Linear::from_quantized(q, b, true),
                    None => Linear::from_dense(lin.tensor("weight", &[out_dim, in_dim])?, b),
                }
            }
        }
    }

    /// The embedding table `name` of shape `(vocab, hidden)`.
    pub fn embedding(&self, name: &str, vocab: usize, hidden: usize) -> Result<EmbeddingTable> {
        match &*self.backend {
            Backend::Safetensors { .. } => {
                let w = self.pp(name).tensor("weight", &[vocab, hidden])?;
                Ok(
                    match self.quantize_loaded(&w, &self.pp(name).full("weight"))? {
                        Some(q) => EmbeddingTable::Quantized(Arc::new(q)),
                        None => EmbeddingTable::Dense(w),
                    },
                )
            }
            Backend::Gguf { .. } => {
                let full = self.pp(name).full("weight");
                let q = self.qtensor(&full, &[vocab, hidden])?;
                if q.dtype().block_size() > 1 && hidden.is_multiple_of(q.dtype().block_size()) {
                    Ok(EmbeddingTable::Quantized(Arc::new(q)))
                } else {
                    let device = self.device();
                    Ok(EmbeddingTable::Dense(
                        q.dequantize(&device).map_err(|e| self.err(&full, e))?,
                    ))
                }
            }
            Backend::Random { .. } => {
                let full = self.pp(name).full("weight");
                Ok(match self.random_quantized(&full, vocab, hidden)? {
                    Some(q) => EmbeddingTable::Quantized(Arc::new(q)),
                    None => {
                        EmbeddingTable::Dense(self.pp(name).tensor("weight", &[vocab, hidden])?)
                    }
                })
            }
        }
    }

    /// The embedding table `name` and the output projection tied to it.
    /// Where the projection holds the weight as the block kernel's tiles
    /// and the table would hold the same blocks, the table is
    /// [`EmbeddingTable::TiedToHead`] and the weight is in memory once.
    pub fn tied_embedding_and_head(
        &self,
        name: &str,
        vocab: usize,
        hidden: usize,
    ) -> Result<(EmbeddingTable, Linear)> {
        let head = self.tied_linear(name, vocab, hidden)?;
        let same_blocks = match &*self.backend {
            // Not when the head was re-quantized from the file's type.
            Backend::Gguf { .. } => {
                self.gguf_dtype(&self.pp(name).full("weight")) == head.quantized_dtype()
            }
            Backend::Safetensors { .. } | Backend::Random { .. } => true,
        };
        if head.held_as_tiles() && same_blocks {
            return Ok((EmbeddingTable::TiedToHead, head));
        }
        Ok((self.embedding(name, vocab, hidden)?, head))
    }

    /// The GGML type of GGUF tensor `hf_name` as the file stores it.
    fn gguf_dtype(&self, hf_name: &str) -> Option<GgmlDType> {
        let Backend::Gguf { content, parts, .. } = &*self.backend else {
            return None;
        };
        let name = gguf_name(hf_name)?;
        std::iter::once(content)
            .chain(parts.iter().map(|p| &p.content))
            .find_map(|c| c.tensor_infos.get(&name))
            .map(|info| info.ggml_dtype)
    }

    /// The output projection shared with the embedding `name` (tied weights).
    fn tied_linear(&self, name: &str, vocab: usize, hidden: usize) -> Result<Linear> {
        match &*self.backend {
            Backend::Safetensors { .. } => {
                let w = self.pp(name).tensor("weight", &[vocab, hidden])?;
                match self.quantize_loaded(&w, &self.pp(name).full("weight"))? {
                    Some(q) => Linear::from_quantized(q, None, true),
                    None => Linear::from_dense(w, None),
                }
            }
            Backend::Gguf { options, .. } => {
                let full = self.pp(name).full("weight");
                let q = self.qtensor(&full, &[vocab, hidden])?;
                let q = self.maybe_requantize(q, &full)?;
                Linear::from_quantized(q, None, options.fast_kernels)
            }
            // Its own random values: the same bytes to read as a tied head.
            Backend::Random { .. } => self.linear(name, vocab, hidden, false),
        }
    }

    /// Random values of `shape` in `dtype` (see [`Weights::random`]),
    /// from a generator seeded by the seed and the tensor's name.
    fn random_values(&self, full: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let Backend::Random { seed, device, .. } = &*self.backend else {
            return Err(Error::model(
                self.path(),
                format!("{full}: not random weights"),
            ));
        };
        let mut state = full.bytes().fold(*seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
        }) | 1;
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| {
                // xorshift64*: fast enough for billions of values.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
                (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect();
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?;
        Ok(t.to_device(device)?)
    }

    /// A random `(rows, cols)` weight quantized as asked, `None` when no
    /// quantization is asked or the type's blocks do not divide `cols`.
    fn random_quantized(&self, full: &str, rows: usize, cols: usize) -> Result<Option<QTensor>> {
        let Backend::Random {
            quantize: Some(to),
            device,
            ..
        } = &*self.backend
        else {
            return Ok(None);
        };
        if !cols.is_multiple_of(to.block_size()) {
            return Ok(None);
        }
        let dense = self.random_values(full, &[rows, cols], DType::F32)?;
        let dense = dense.to_device(&Device::Cpu)?;
        let q = QTensor::quantize(&dense, *to).map_err(|e| self.err(full, e))?;
        if device.is_cpu() {
            return Ok(Some(q));
        }
        let data = q.data().map_err(|e| self.err(full, e))?;
        let storage = candle_core::quantized::QStorage::from_data(data, device, *to)
            .map_err(|e| self.err(full, e))?;
        Ok(Some(QTensor::new(storage, (rows, cols))?))
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The GGUF tensor for `hf_name`, which must have shape `want`: the
    /// shape is checked in the file's tensor table before any data is read
    /// (a zero or overflowing size would reach candle's reader).
    fn qtensor(&self, hf_name: &str, want: &[usize]) -> Result<QTensor> {
        let Backend::Gguf {
            content,
            file,
            device,
            path,
            parts,
            ..
        } = &*self.backend
        else {
            return Err(Error::model(
                self.path(),
                format!("{hf_name}: not a GGUF checkpoint"),
            ));
        };
        let name = gguf_name(hf_name).ok_or_else(|| {
            Error::model(path, format!("no GGUF tensor corresponds to {hf_name}"))
        })?;
        if !content.tensor_infos.contains_key(&name) {
            // A split file's tensors are spread over its parts.
            if let Some(part) = parts
                .iter()
                .find(|p| p.content.tensor_infos.contains_key(&name))
            {
                let dims = part.content.tensor_infos[&name].shape.dims();
                if dims != want {
                    return Err(self.shape_err(hf_name, want, dims));
                }
                let mut reader = part.file.lock().map_err(|_| {
                    Error::model(&part.path, "GGUF reader poisoned by an earlier failure")
                })?;
                return part
                    .content
                    .tensor(&mut *reader, &name, device)
                    .map_err(|e| {
                        Error::model(
                            &part.path,
                            format!(
                                "cannot read tensor {name}: {} (is the file truncated?)",
                                candle_message(&e)
                            ),
                        )
                    });
            }
            return Err(Error::model(
                path,
                format!("tensor {name} is missing from the GGUF file"),
            ));
        }
        let dims = content.tensor_infos[&name].shape.dims();
        if dims != want {
            return Err(self.shape_err(hf_name, want, dims));
        }
        let mut file = file
            .lock()
            .map_err(|_| Error::model(path, "GGUF reader poisoned by an earlier failure"))?;
        content.tensor(&mut *file, &name, device).map_err(|e| {
            Error::model(
                path,
                format!(
                    "cannot read tensor {name}: {} (is the file truncated?)",
                    candle_message(&e)
                ),
            )
        })
    }

    fn maybe_requantize(&self, q: QTensor, name: &str) -> Result<QTensor> {
        let Backend::Gguf {
            options,
            device,
            requantized,
            ..
        } = &*self.backend
        else {
            return Ok(q);
        };
        let from = q.dtype();
        let target = match options.requantize {
            Requantize::Never => None,
            Requantize::Auto => match from {
                GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => Some(GgmlDType::Q8_0),
                _ => None,
            },
            Requantize::To(t) if t != from && from.block_size() > 1 => Some(t),
            Requantize::To(_) => None,
        };
        let Some(to) = target else { return Ok(q) };
        let (rows, cols) = q.shape().dims2()?;
        if matches!(options.requantize, Requantize::Auto)
            && options.fast_kernels
            && q.device().is_cpu()
            && super::gemv::takes(from, rows, cols)
        {
            return Ok(q);
        }
        if !cols.is_multiple_of(to.block_size()) {
            return Ok(q);
        }
        let dense = q.dequantize(device).map_err(|e| self.err(name, e))?;
        let out = QTensor::quantize(&dense, to).map_err(|e| self.err(name, e))?;
        if let Ok(mut log) = requantized.lock() {
            log.push((from, to));
        }
        Ok(out)
    }

    /// The file holding tensor `full`, for an error: for a tensor in none
    /// of the safetensors files, the shard the index puts it in (the index
    /// is read only then); the checkpoint's path when unknown.
    fn holder(&self, full: &str) -> PathBuf {
        match &*self.backend {
            Backend::Safetensors { holders, path, .. } => holders
                .get(full)
                .cloned()
                .or_else(|| shard_in_index(path, full))
                .unwrap_or_else(|| path.clone()),
            Backend::Gguf { parts, path, .. } => gguf_name(full)
                .and_then(|g| {
                    parts
                        .iter()
                        .find(|p| p.content.tensor_infos.contains_key(&g))
                })
                .map_or(path, |p| &p.path)
                .clone(),
            Backend::Random { path, .. } => path.clone(),
        }
    }

    fn err(&self, name: &str, e: candle_core::Error) -> Error {
        if let Backend::Safetensors { vb, config, .. } = &*self.backend {
            if !vb.contains_tensor(name) {
                let from = config.as_ref().map_or_else(String::new, |c| {
                    format!(", which {} describes the model with", c.display())
                });
                return Error::model(self.holder(name), format!("no tensor {name}{from}"));
            }
        }
        Error::model(
            self.holder(name),
            format!("tensor {name}: {}", candle_message(&e)),
        )
    }

    fn shape_err(&self, name: &str, want: &[usize], got: &[usize]) -> Error {
        let from = match &*self.backend {
            Backend::Safetensors {
                config: Some(c), ..
            } => format!(" as {} describes the model", c.display()),
            _ => String::new(),
        };
        Error::model(
            self.holder(name),
            format!("tensor {name} has shape {got:?}, expected {want:?}{from}"),
        )
    }

    /// Names `config` as the source of the expected shapes in errors
    /// (weights just made, not yet shared).
    pub fn described_by(mut self, config: &Path) -> Self {
        if let Some(Backend::Safetensors { config: c, .. }) = Arc::get_mut(&mut self.backend) {
            *c = Some(config.to_path_buf());
        }
        self
    }
}

/// The shard that the `model.safetensors.index.json` beside `file` puts
/// tensor `name` in, if there is such an index and it names one.
fn shard_in_index(file: &Path, name: &str) -> Option<PathBuf> {
    let dir = file.parent()?;
    let map = super::hub::weight_map(&dir.join("model.safetensors.index.json")).ok()?;
    map.into_iter()
        .find(|(tensor, _)| tensor == name)
        .map(|(_, shard)| dir.join(shard))
}

/// The shape candle found where it expected another, through the
/// backtrace and context wrappers it may put around the error.
fn unexpected_shape(e: &candle_core::Error) -> Option<&[usize]> {
    match e {
        candle_core::Error::UnexpectedShape { got, .. } => Some(got.dims()),
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::Context { inner, .. } => unexpected_shape(inner),
        _ => None,
    }
}

/// Drops the pages of `bytes`, a tensor's data in a read-only file
/// mapping, from this process's memory once the tensor is copied: they are
/// read again from the file if touched, so nothing changes but the resident
/// size, which then holds one source tensor at a time instead of the whole
/// checkpoint. Only whole pages inside `bytes` are dropped.
fn release_pages(bytes: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        let start = (bytes.as_ptr() as usize).div_ceil(page) * page;
        let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
        if end > start {
            // SAFETY: [start, end) lies inside a live read-only mapping of a
            // file; MADV_DONTNEED on it only drops pages that the kernel
            // refills from the file on the next access.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}

/// Maps a Hugging Face Llama tensor name to llama.cpp's GGUF name.
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    let g = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{param}"))
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn hf_names_map_to_llama_cpp_names() {
        let cases = [
            ("model.embed_tokens.weight", Some("token_embd.weight")),
            ("model.norm.weight", Some("output_norm.weight")),
            ("lm_head.weight", Some("output.weight")),
            (
                "model.layers.0.self_attn.q_proj.weight",
                Some("blk.0.attn_q.weight"),
            ),
            (
                "model.layers.12.self_attn.o_proj.weight",
                Some("blk.12.attn_output.weight"),
            ),
            (
                "model.layers.3.mlp.down_proj.weight",
                Some("blk.3.ffn_down.weight"),
            ),
            (
                "model.layers.3.self_attn.k_proj.bias",
                Some("blk.3.attn_k.bias"),
            ),
            (
                "model.layers.7.post_attention_layernorm.weight",
                Some("blk.7.ffn_norm.weight"),
            ),
            ("model.layers.x.mlp.up_proj.weight", None),
            ("model.layers.1.mlp.unknown.weight", None),
        ];
        for (hf, want) in cases {
            assert_eq!(gguf_name(hf).as_deref(), want, "{hf}");
        }
    }
}
