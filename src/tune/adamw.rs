//! AdamW (decoupled weight decay) whose moments can be saved and loaded,
//! so that `tune --resume` continues exactly where a run stopped.
//! (candle-nn's `AdamW` keeps its moments private.)

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::error::{Error, Result};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AdamWParams {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The optimizer over a fixed list of variables.
pub struct AdamW {
    params: AdamWParams,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
}

impl AdamW {
    /// Fresh moments for `vars`.
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            params,
            vars,
            m,
            v,
            step: 0,
        })
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One update with `grads` (one per variable, in order) at `lr`.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<()> {
        let p = self.params;
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - p.beta1.powi(t), 1.0 - p.beta2.powi(t));
        for (i, (var, g)) in self.vars.iter().zip(grads).enumerate() {
            let m = ((&self.m[i] * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + p.eps)?)?;
            let theta = var.as_tensor();
            let decayed = (theta * (1.0 - lr * p.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Writes the moments and step count to `path` (safetensors).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            map.insert(format!("m.{i}"), m.clone());
            map.insert(format!("v.{i}"), v.clone());
        }
        map.insert(
            "step".to_string(),
            Tensor::new(&[self.step as u32], &Device::Cpu)?,
        );
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    /// Reads what [`AdamW::save`] wrote; the variables must be the same
    /// list with the same shapes.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let bad = |m: String| Error::invalid("checkpoint", format!("{}: {m}", path.display()));
        let map = candle_core::safetensors::load(path, self.vars[0].device())?;
        for i in 0..self.vars.len() {
            let (Some(m), Some(v)) = (map.get(&format!("m.{i}")), map.get(&format!("v.{i}")))
            else {
                return Err(bad(format!("no moments for variable {i}")));
            };
            if m.dims() != self.vars[i].dims() || v.dims() != self.vars[i].dims() {
                return Err(bad(format!("moments of variable {i} have another shape")));
            }
            self.m[i] = m.clone();
            self.v[i] = v.clone();
        }
        let step = map
            .get("step")
            .ok_or_else(|| bad("no step count".into()))?
            .to_vec1::<u32>()?;
        self.step = step.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

/// Learning rate at optimizer step `step` (0-based) of `total`: linear
/// warm-up over `warmup` steps to `peak`, then cosine decay to zero.
///
/// ```
/// use sqlagent::tune::learning_rate;
/// assert_eq!(learning_rate(0, 100, 10, 1.0), 0.1);
/// assert_eq!(learning_rate(9, 100, 10, 1.0), 1.0);
/// assert!((learning_rate(55, 100, 10, 1.0) - 0.5).abs() < 0.02);
/// assert!(learning_rate(99, 100, 10, 1.0) < 0.01);
/// ```
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_minimises_a_quadratic_and_its_state_round_trips() {
        let x = Var::new(&[3.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![x.clone()], AdamWParams::default()).unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g = grads.get(x.as_tensor()).unwrap().clone();
            opt.step(&[g], 0.05).unwrap();
        }
        let v: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        opt.save(&path).unwrap();
        let mut again = AdamW::new(vec![x.clone()], AdamWParams::default()).unwrap();
        again.load(&path).unwrap();
        assert_eq!(again.steps(), 300);
        let (a, b): (Vec<f32>, Vec<f32>) =
            (again.v[0].to_vec1().unwrap(), opt.v[0].to_vec1().unwrap());
        assert_eq!(a, b);
    }
}
