//! Reading a checkpoint: the container, its checksum and metadata ([`Checkpoint::from_bytes`]),
//! then every tensor checked against the trainer it is restored into before anything is
//! applied ([`Checkpoint::restore`]).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sparse_algos::AlgoState;
use sparse_core::{LayerShape, Mask};
use sparse_kernels::Tensor;

use super::{checksum, FORMAT, FORMAT_V1};
use crate::config::TrainConfig;
use crate::report::EpochMetrics;
use crate::trainer::Trainer;

/// A parsed checkpoint whose container, checksum and metadata are valid.
pub struct Checkpoint {
    bytes: Vec<u8>,
    meta: std::collections::HashMap<String, String>,
    config: TrainConfig,
    step: u64,
    epoch: u64,
    best_test_accuracy: f64,
    metrics: Option<EpochMetrics>,
    verified: bool,
}

/// Little-endian bytes as values (safetensors data may be unaligned, so this copies).
fn from_bytes<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(b)
}

/// The tensor values of one parameter, staged before they are applied.
struct StagedParam {
    value: Vec<f32>,
    momentum: Vec<f32>,
    mask: Option<Mask>,
}

impl Checkpoint {
    /// Reads and checks a checkpoint file (see [`from_bytes`](Self::from_bytes)).
    pub fn read(path: &Path) -> Result<Checkpoint> {
        if path.is_dir() {
            bail!("{}: is a directory, not a checkpoint", path.display());
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read checkpoint", path.display()))?;
        let ck = Checkpoint::from_bytes(bytes).with_context(|| path.display().to_string())?;
        if !ck.verified {
            eprintln!(
                "warning: {} is a {FORMAT_V1} checkpoint without a checksum; its data cannot be verified",
                path.display()
            );
        }
        Ok(ck)
    }

    /// The `format` metadata of a safetensors file, if it has one.
    pub fn format_of(path: &Path) -> Option<String> {
        let bytes = std::fs::read(path).ok()?;
        let (_, md) = SafeTensors::read_metadata(&bytes).ok()?;
        md.metadata().as_ref()?.get("format").cloned()
    }

    /// Checks the container (safetensors offsets), the format, the checksum of the tensor
    /// data and the metadata (config, step, epoch, best accuracy, metrics record).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Checkpoint> {
        let corrupt =
            |e: safetensors::SafeTensorError| anyhow!("corrupt or truncated checkpoint ({e:?})");
        let (_, md) = SafeTensors::read_metadata(&bytes).map_err(corrupt)?;
        let st = SafeTensors::deserialize(&bytes).map_err(corrupt)?;
        let meta = md.metadata().clone().unwrap_or_default();
        let format = meta.get("format").map(String::as_str);
        let verified = match format {
            Some(FORMAT) => {
                let mut names: Vec<String> = st.names().into_iter().cloned().collect();
                names.sort();
                let views: Vec<TensorView> = names
                    .iter()
                    .map(|n| st.tensor(n).map_err(corrupt))
                    .collect::<Result<_>>()?;
                let sum = checksum(
                    names
                        .iter()
                        .zip(&views)
                        .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
                );
                let stored = meta.get("checksum").map(String::as_str).unwrap_or("none");
                ensure!(
                    stored == sum,
                    "checkpoint data do not match their checksum (stored {stored}, computed {sum}): \
                     the file is corrupt"
                );
                true
            }
            Some(FORMAT_V1) => false,
            other => bail!("not a sparse-train checkpoint (format {other:?})"),
        };
        let text = meta.get("config").context("no config")?;
        let mut config: TrainConfig =
            toml::from_str(text).context("checkpoint config is invalid")?;
        // v1 runs predate scaled schedules: they continue with the papers' intervals.
        if !verified && !text.lines().any(|l| l.starts_with("schedule =")) {
            config.schedule = crate::config::Schedule::Paper;
        }
        config.validate().context("checkpoint config is invalid")?;
        let get = |k: &str| -> Result<&String> {
            meta.get(k)
                .with_context(|| format!("checkpoint metadata `{k}` is missing"))
        };
        let num = |k: &str| -> Result<u64> {
            get(k)?
                .parse()
                .with_context(|| format!("checkpoint metadata `{k}` is invalid"))
        };
        let (step, epoch) = (num("step")?, num("epoch")?);
        let best_test_accuracy: f64 = get("best_test_accuracy")?
            .parse()
            .context("checkpoint metadata `best_test_accuracy` is invalid")?;
        ensure!(
            (0.0..=1.0).contains(&best_test_accuracy),
            "checkpoint best test accuracy {best_test_accuracy} is outside [0, 1]"
        );
        let metrics = match meta.get("metrics") {
            Some(m) => {
                let m: EpochMetrics =
                    serde_json::from_str(m).context("checkpoint metrics record is invalid")?;
                ensure!(
                    m.step == step && m.epoch == epoch,
                    "checkpoint metrics record is for step {} (epoch {}), the checkpoint for step {step} (epoch {epoch})",
                    m.step,
                    m.epoch
                );
                Some(m)
            }
            None => None,
        };
        serde_json::from_str::<std::collections::BTreeMap<String, f64>>(get("algo_scalars")?)
            .context("checkpoint metadata `algo_scalars` is invalid")?;
        Ok(Checkpoint {
            bytes,
            meta,
            config,
            step,
            epoch,
            best_test_accuracy,
            metrics,
            verified,
        })
    }

    /// The run configuration stored in the checkpoint (validated).
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Epochs completed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The `metrics.jsonl` record of the checkpoint's epoch (absent in v1 checkpoints).
    pub fn metrics(&self) -> Option<&EpochMetrics> {
        self.metrics.as_ref()
    }

    /// Builds a trainer from `cfg` (the stored config, possibly extended) and restores into it.
    pub fn into_trainer(self, cfg: TrainConfig) -> Result<Trainer> {
        let mut t = Trainer::new(cfg)?;
        self.restore(&mut t)?;
        Ok(t)
    }

    /// Restores everything into `t`, a trainer built from a configuration that
    /// [`TrainConfig::same_run`] as [`config`](Self::config). Every tensor's presence, dtype,
    /// shape and values (finite; masks 0/1; the exact budget of constant-budget methods;
    /// zero weights and momentum outside the mask; fired masks covering the masks), the
    /// step against the run length and the method's state against the layers are checked
    /// first; unknown tensors are refused. On an error `t` must be discarded.
    pub fn restore(&self, t: &mut Trainer) -> Result<()> {
        ensure!(
            self.config.same_run(&t.cfg),
            "the checkpoint is of a different run configuration (checkpoint vs this run: {})",
            self.config.run_differences(&t.cfg).join("; ")
        );
        let st = SafeTensors::deserialize(&self.bytes)
            .map_err(|e| anyhow!("corrupt checkpoint: {e:?}"))?;
        let mut known = BTreeSet::new();
        let mut view = |name: String, dtype: Dtype, shape: &[usize]| -> Result<TensorView> {
            let v = st
                .tensor(&name)
                .map_err(|_| anyhow!("checkpoint lacks tensor `{name}`"))?;
            ensure!(
                v.dtype() == dtype && v.shape() == shape,
                "checkpoint tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}",
                v.dtype(),
                v.shape()
            );
            known.insert(name);
            Ok(v)
        };
        let finite = |name: &str, v: Vec<f32>| -> Result<Vec<f32>> {
            ensure!(
                v.iter().all(|x| x.is_finite()),
                "checkpoint tensor `{name}` holds non-finite values"
            );
            Ok(v)
        };
        let mask_of = |name: &str, v: TensorView, shape: &[usize]| -> Result<Mask> {
            ensure!(
                v.data().iter().all(|&b| b <= 1),
                "checkpoint mask `{name}` holds values other than 0 and 1"
            );
            let bits: Vec<bool> = v.data().iter().map(|&b| b == 1).collect();
            Ok(Mask::from_bools(shape, &bits)?)
        };
        let dense_values = t.method.keeps_dense_values();
        let mut params = Vec::new();
        for p in t.model.params() {
            let shape = p.value.shape().to_vec();
            let (vn, mn) = (format!("param/{}", p.name), format!("momentum/{}", p.name));
            let value = finite(
                &vn,
                from_bytes(view(vn.clone(), Dtype::F32, &shape)?.data()),
            )?;
            let momentum = finite(
                &mn,
                from_bytes(view(mn.clone(), Dtype::F32, &shape)?.data()),
            )?;
            let mask = match p.mask() {
                Some(_) => {
                    let name = format!("mask/{}", p.name);
                    let m = mask_of(&name, view(name.clone(), Dtype::U8, &shape)?, &shape)?;
                    if !dense_values {
                        let stray = (0..m.len())
                            .find(|&i| !m.get(i) && (value[i] != 0.0 || momentum[i] != 0.0));
                        if let Some(i) = stray {
                            bail!(
                                "`{}` has a nonzero weight or momentum at inactive position {i}: \
                                 mask and weights do not belong together",
                                p.name
                            );
                        }
                    }
                    Some(m)
                }
                None => None,
            };
            params.push(StagedParam {
                value,
                momentum,
                mask,
            });
        }
        let mut bn = Vec::new();
        for (name, m, _) in t.model.running_stats_mut() {
            let shape = m.shape().to_vec();
            let (mn, vn) = (format!("bn/{name}/mean"), format!("bn/{name}/var"));
            let mean = finite(
                &mn,
                from_bytes(view(mn.clone(), Dtype::F32, &shape)?.data()),
            )?;
            let var = finite(
                &vn,
                from_bytes(view(vn.clone(), Dtype::F32, &shape)?.data()),
            )?;
            ensure!(
                var.iter().all(|&v| v >= 0.0),
                "checkpoint tensor `{vn}` holds negative variances"
            );
            bn.push((mean, var));
        }
        let masked: Vec<(LayerShape, &Mask)> = t
            .model
            .params()
            .iter()
            .zip(&params)
            .filter_map(|(p, s)| {
                s.mask
                    .as_ref()
                    .map(|m| (LayerShape::new(p.name.clone(), p.value.shape()), m))
            })
            .collect();
        if let Some(b) = &t.budget {
            b.check(masked.iter().map(|(l, m)| (l.name.as_str(), *m)))
                .context("checkpoint masks break the run's exact nonzero budget")?;
        }
        let mut fired = Vec::new();
        for (i, (l, m)) in masked.iter().enumerate() {
            let name = format!("fired/{i}");
            let f = mask_of(
                &name,
                view(name.clone(), Dtype::U8, &[m.len()])?,
                &[m.len()],
            )?;
            let f = f.reshape(m.shape())?;
            ensure!(
                m.and_not(&f)?.count_ones() == 0,
                "checkpoint coverage of `{}` misses active weights",
                l.name
            );
            fired.push(f);
        }
        let mut algo = AlgoState {
            scalars: serde_json::from_str(&self.meta["algo_scalars"])?,
            ..Default::default()
        };
        for name in st.names() {
            let v = st.tensor(name).map_err(|e| anyhow!("{e:?}"))?;
            let one_d = v.shape().len() == 1;
            if let Some(k) = name.strip_prefix("algo/t/") {
                ensure!(
                    one_d && v.dtype() == Dtype::F32,
                    "checkpoint tensor `{name}` is not 1-D F32"
                );
                algo.tensors.insert(k.to_string(), from_bytes(v.data()));
            } else if let Some(k) = name.strip_prefix("algo/c/") {
                ensure!(
                    one_d && v.dtype() == Dtype::U32,
                    "checkpoint tensor `{name}` is not 1-D U32"
                );
                algo.counters.insert(k.to_string(), from_bytes(v.data()));
            } else if !known.contains(name) {
                bail!("checkpoint holds tensor `{name}`, which this model does not have");
            }
        }
        let (spe, total) = (t.steps_per_epoch(), t.total_steps());
        ensure!(
            self.step <= total,
            "checkpoint is at step {}, beyond the run's {total} steps (a run cannot be shortened)",
            self.step
        );
        ensure!(
            self.epoch >= self.step / spe && self.epoch <= self.step / spe + 1,
            "checkpoint epoch {} does not match its step {} ({spe} steps per epoch)",
            self.epoch,
            self.step
        );
        let layers: Vec<LayerShape> = masked.into_iter().map(|(l, _)| l).collect();

        // Everything checked: apply.
        let dev = t.device;
        for (p, s) in t.model.params_mut().into_iter().zip(params) {
            let shape = p.value.shape().to_vec();
            p.value = Tensor::from_vec(&shape, s.value, dev)?;
            p.momentum = Tensor::from_vec(&shape, s.momentum, dev)?;
            if let Some(m) = s.mask {
                p.set_mask(m)?;
            }
        }
        for ((_, m, v), (mean, var)) in t.model.running_stats_mut().into_iter().zip(bn) {
            let shape = m.shape().to_vec();
            *m = Tensor::from_vec(&shape, mean, dev)?;
            *v = Tensor::from_vec(&shape, var, dev)?;
        }
        t.coverage.restore(fired)?;
        t.method.load_state(&algo)?;
        t.method.check_state(&layers)?;
        if let Some(a) = &mut t.agc {
            a.load_state(&algo)?;
        }
        t.step = self.step;
        t.epoch = self.epoch;
        t.best_test_accuracy = self.best_test_accuracy;
        t.last_epoch = self.metrics.clone();
        Ok(())
    }
}
