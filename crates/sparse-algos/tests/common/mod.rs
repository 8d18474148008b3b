//! The test model (a few masked layers as plain tensors) and step helpers shared by the
//! criterion tests.
#![allow(dead_code)]

use sparse_algos::dst::{DropRule, DstConfig, GrowInitRule, GrowRule, Rounding};
use sparse_algos::{Layer, StepInfo};
use sparse_core::{random_mask, stream_rng, Mask, Schedule};
use sparse_kernels::ops::mask_update::apply_mask;
use sparse_kernels::{DeviceMask, Tensor};

pub fn host(t: &Tensor) -> Vec<f32> {
    t.to_host().unwrap()
}

pub fn t(v: &[f32]) -> Tensor {
    Tensor::cpu(&[v.len()], v.to_vec()).unwrap()
}

pub struct Model {
    pub names: Vec<String>,
    pub w: Vec<Tensor>,
    pub m: Vec<DeviceMask>,
    pub g: Vec<Tensor>,
    pub mom: Vec<Tensor>,
}

impl Model {
    pub fn new(ws: Vec<Vec<f32>>, masks: Vec<Vec<bool>>, gs: Vec<Vec<f32>>) -> Model {
        let n = ws.len();
        let w: Vec<Tensor> = ws
            .iter()
            .map(|v| Tensor::cpu(&[v.len()], v.clone()).unwrap())
            .collect();
        let m: Vec<DeviceMask> = masks
            .iter()
            .map(|b| DeviceMask::cpu(Mask::from_bools(&[b.len()], b).unwrap()))
            .collect();
        let mut model = Model {
            names: (0..n).map(|i| format!("l{i}")).collect(),
            mom: ws
                .iter()
                .map(|v| Tensor::cpu(&[v.len()], vec![0.5; v.len()]).unwrap())
                .collect(),
            g: gs
                .iter()
                .map(|v| Tensor::cpu(&[v.len()], v.clone()).unwrap())
                .collect(),
            w,
            m,
        };
        // Storage invariant: inactive weights and momentum are 0.
        for i in 0..n {
            apply_mask(&mut model.w[i], &model.m[i]).unwrap();
            apply_mask(&mut model.mom[i], &model.m[i]).unwrap();
        }
        model
    }

    pub fn random(sizes: &[usize], density: f64, seed: u64) -> Model {
        let mut rng = stream_rng(seed, 0);
        let ws: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|i| ((i * 7919 + seed as usize * 31) % 1000) as f32 / 500.0 - 1.0)
                    .collect()
            })
            .collect();
        let gs: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|i| ((i * 104_729 + seed as usize) % 997) as f32 / 997.0 - 0.5)
                    .collect()
            })
            .collect();
        let masks = sizes
            .iter()
            .map(|&n| {
                random_mask(&[n], ((n as f64) * density) as usize, &mut rng)
                    .unwrap()
                    .to_bools()
            })
            .collect();
        Model::new(ws, masks, gs)
    }

    pub fn layers(&mut self) -> Vec<Layer<'_>> {
        self.names
            .iter()
            .zip(self.w.iter_mut())
            .zip(self.m.iter_mut())
            .zip(self.g.iter())
            .zip(self.mom.iter_mut())
            .map(|((((name, weight), mask), grad), momentum)| Layer {
                name,
                weight,
                mask,
                grad,
                momentum,
            })
            .collect()
    }

    pub fn ones(&self, l: usize) -> Vec<usize> {
        self.m[l].mask().iter_ones().collect()
    }
}

pub fn step(t: u64) -> StepInfo {
    StepInfo {
        step: t,
        epoch: 0,
        steps_per_epoch: 100,
        total_steps: 1000,
    }
}

pub fn dst(grow: GrowRule, f: f64) -> DstConfig {
    DstConfig {
        name: "t".into(),
        drop_fraction: Schedule::Constant { value: f },
        interval: 1,
        first: 0,
        end: None,
        rounding: Rounding::Floor,
        skip_step_on_update: false,
        drop: DropRule::Magnitude,
        grow,
        grow_init: GrowInitRule::Zero,
        drop_noise: None,
        seed: 1,
    }
}
