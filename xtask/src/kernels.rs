//! `cargo xtask kernels`: compiles every `kernels/*.cu` through NVRTC for each target
//! architecture (default sm_80 and sm_90; no GPU needed) and through the host compiler as
//! the emulated device builds it, prints each kernel's registers, spills and static shared
//! memory, and fails on any compile error or warning.

use std::process::Command;

use anyhow::{bail, Context, Result};
use sparse_kernels::backend::gpu::host::{compiler, HostRuntime};
use sparse_kernels::backend::gpu::sources::nvrtc_options;
use sparse_kernels::backend::gpu::Family;
use sparse_kernels::nvrtc::{nvrtc, parse_resources};

pub fn kernels(archs: &[String]) -> Result<()> {
    let lib = nvrtc().context("cargo xtask kernels needs NVRTC")?;
    let (maj, min) = lib.version();
    println!("NVRTC {maj}.{min} from {}", lib.path());
    let mut errors = Vec::new();
    println!(
        "{:<14} {:<24} {:<6} {:>5} {:>12} {:>11} {:>6}",
        "file", "kernel", "arch", "regs", "spill st/ld", "smem bytes", "host"
    );
    let cxx = compiler()?;
    for f in Family::ALL {
        let host = host_check(&cxx, f);
        if let Err(e) = &host {
            errors.push(format!("{} on the host: {e}", f.file()));
        }
        let mark = if host.is_ok() { "ok" } else { "FAIL" };
        for arch in archs {
            let opts = vec![
                format!("--gpu-architecture={arch}"),
                "--std=c++17".into(),
                "--ptxas-options=-v".into(),
            ];
            match lib.compile(&f.source(), f.file(), &opts) {
                Ok(out) => {
                    let res = parse_resources(&out.log);
                    let names = f.kernels();
                    for k in &names {
                        match res.iter().find(|r| &r.name == k) {
                            Some(r) => println!(
                                "{:<14} {:<24} {:<6} {:>5} {:>12} {:>11} {:>6}",
                                f.file(),
                                k,
                                arch,
                                r.registers,
                                format!("{}/{}", r.spill_stores, r.spill_loads),
                                r.shared_bytes,
                                mark
                            ),
                            None => errors
                                .push(format!("{}: no ptxas record of {k} for {arch}", f.file())),
                        }
                    }
                    if out.log.contains("warning") {
                        errors.push(format!(
                            "{} for {arch} has warnings:\n{}",
                            f.file(),
                            out.log
                        ));
                    }
                }
                Err(e) => errors.push(format!("{} for {arch}: {e}", f.file())),
            }
        }
        // What the driver runtime loads on an H100/H200: PTX for compute_90.
        match lib.compile(&f.source(), f.file(), &nvrtc_options((9, 0))) {
            Ok(out) if out.ptx.is_some() => {}
            Ok(_) => errors.push(format!(
                "{}: NVRTC produced no PTX for compute_90",
                f.file()
            )),
            Err(e) => errors.push(format!("{} as PTX for compute_90: {e}", f.file())),
        }
    }
    if !errors.is_empty() {
        bail!("{} kernel problem(s):\n{}", errors.len(), errors.join("\n"));
    }
    println!(
        "all {} kernel files compile for {}, as compute_90 PTX, and for the host",
        Family::ALL.len(),
        archs.join(", ")
    );
    Ok(())
}

/// Compiles the host translation unit with warnings as errors (syntax and semantics only).
fn host_check(cxx: &str, f: Family) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join(f.file().replace(".cu", ".cpp"));
    std::fs::write(&src, HostRuntime::translation_unit(f))?;
    let o = Command::new(cxx)
        .args([
            "-std=c++17",
            "-fsyntax-only",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-parameter",
        ])
        .arg(&src)
        .output()?;
    if !o.status.success() {
        bail!("{}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}
