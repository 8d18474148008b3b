//! The RigL preset on two masked layers through the step protocol: every step sets a
//! gradient, calls `apply_step` (SGD through the masks, drop-and-grow on update steps), and
//! checks each layer's nonzero count against the exact ERK budget.
//!
//! `cargo run -p sparse-algos --example rigl_step`

use sparse_algos::{apply_step, preset, Coverage, Decay, Param, PresetContext, StepInfo};
use sparse_core::{layer_budget, random_masks, LayerShape};
use sparse_kernels::ops::optim::SgdConfig;
use sparse_kernels::{Device, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let shapes: [&[usize]; 2] = [&[32, 16, 3, 3], &[10, 128]];
    let mut params = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n: usize = s.iter().product();
            let v = (0..n)
                .map(|j| ((j * 31 + i) % 17) as f32 / 17.0 - 0.5)
                .collect();
            Param::new(
                format!("layer{i}.weight"),
                Tensor::from_vec(s, v, dev)?,
                true,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let layers: Vec<LayerShape> = params
        .iter()
        .map(|p| LayerShape::new(p.name.clone(), p.value.shape()))
        .collect();
    let ctx = PresetContext {
        sparsity: 0.9,
        layers: layers.clone(),
        total_steps: 100,
        steps_per_epoch: 10,
        epochs: 10,
        lr: 0.1,
        seed: 0,
        interval: Some(10),
        schedule: sparse_algos::ScheduleMode::Paper,
        distribution: None,
    };
    let mut p = preset("rigl", &ctx)?;
    let budget = layer_budget(&layers, p.init.sparsity, &p.init.distribution, &[])?;
    for (param, m) in params.iter_mut().zip(random_masks(&budget, 0)) {
        param.set_mask(m)?;
        param.mask_value()?;
    }
    let mut coverage = Coverage::new(&params.iter().collect::<Vec<_>>());
    let sgd = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 5e-4,
    };
    for step in 0..60 {
        for (i, param) in params.iter_mut().enumerate() {
            let n = param.value.numel();
            let g = (0..n)
                .map(|j| (((j * 7 + step as usize * 13 + i) % 23) as f32 - 11.0) / 11.0)
                .collect();
            param.grad = Tensor::from_vec(param.value.shape(), g, dev)?;
        }
        let info = StepInfo {
            step,
            epoch: step / 10,
            steps_per_epoch: 10,
            total_steps: 100,
        };
        let mut refs: Vec<&mut Param> = params.iter_mut().collect();
        if let Some(r) = apply_step(p.method.as_mut(), &info, &mut refs, &sgd, Decay::All, None)? {
            coverage.record(&params.iter().collect::<Vec<_>>())?;
            budget.check(
                params
                    .iter()
                    .filter_map(|q| q.mask().map(|m| (q.name.as_str(), m.mask()))),
            )?;
            println!(
                "step {step:>2}: dropped {:>4}, grown {:>4}; budget exact; coverage {:.3}",
                r.dropped(),
                r.grown(),
                coverage.fraction()
            );
        }
    }
    Ok(())
}
