//! Finding a CUDA library (NVRTC, cuBLAS) wherever CUDA 12 or 13 installs it, so a user
//! never adds symlinks or `LD_LIBRARY_PATH`. The places, in order:
//!
//! 1. the library's environment variable (`SPARSE_NVRTC`, `SPARSE_CUBLAS`): the file, or
//!    the folder that holds it;
//! 2. the loader's search path, by soname (CUDA 13 first, then 12, then unversioned);
//! 3. `$CUDA_HOME`, `$CUDA_PATH` and `/usr/local/cuda` (`lib64`, `lib`, `targets/*/lib`);
//! 4. the `site-packages` of `$VIRTUAL_ENV` and of `python3`, where the PyPI wheels put them
//!    (`nvidia/cu13/lib` for CUDA 13 wheels, `nvidia/<component>/lib` for CUDA 12 ones).

use std::path::{Path, PathBuf};

/// What to look for.
pub struct LibSpec {
    /// The environment variable that names the file or its folder.
    pub env: &'static str,
    /// File names, preferred first.
    pub names: &'static [&'static str],
    /// Folders inside `site-packages`.
    pub wheel_dirs: &'static [&'static str],
}

/// Every path to try, in order.
pub fn candidates(spec: &LibSpec) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(spec.env) {
        let p = PathBuf::from(p);
        if p.is_dir() {
            out.extend(spec.names.iter().map(|n| p.join(n)));
        } else {
            out.push(p);
        }
    }
    out.extend(spec.names.iter().map(PathBuf::from));
    let mut roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .collect();
    roots.push("/usr/local/cuda".into());
    for r in roots {
        for sub in [
            "lib64",
            "lib",
            "targets/x86_64-linux/lib",
            "targets/sbsa-linux/lib",
        ] {
            out.extend(spec.names.iter().map(|n| r.join(sub).join(n)));
        }
    }
    for sp in site_packages() {
        for sub in spec.wheel_dirs {
            out.extend(spec.names.iter().map(|n| sp.join(sub).join(n)));
        }
    }
    out
}

/// `site-packages` folders of the active virtual environment and of `python3`.
fn site_packages() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        if let Ok(rd) = std::fs::read_dir(Path::new(&venv).join("lib")) {
            out.extend(rd.flatten().map(|e| e.path().join("site-packages")));
        }
    }
    let script =
        "import site;print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))";
    if let Ok(o) = std::process::Command::new("python3")
        .args(["-c", script])
        .stderr(std::process::Stdio::null())
        .output()
    {
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| PathBuf::from(l.trim())),
        );
    }
    out
}

/// Opens the first candidate that loads: the library and its path, or a message naming
/// every place tried. `before(path)` runs first for each candidate that exists (cuBLAS
/// loads its `libcublasLt` sibling there, so its dependency resolves without a loader path).
pub fn open(
    spec: &LibSpec,
    before: impl Fn(&Path),
) -> std::result::Result<(libloading::Library, PathBuf), String> {
    let tried = candidates(spec);
    for c in &tried {
        if c.is_absolute() && c.exists() {
            before(c);
        }
        // SAFETY: loading a CUDA library runs only its (trusted) initialisers.
        if let Ok(lib) = unsafe { libloading::Library::new(c) } {
            return Ok((lib, c.clone()));
        }
    }
    let shown: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(format!("tried {}", shown.join(", ")))
}
