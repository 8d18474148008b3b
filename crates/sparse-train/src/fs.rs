//! Crash-safe file writes.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `path` through a uniquely named temporary file in the same directory, synced and
/// renamed over the target, so a crash never leaves a partial file and concurrent writers
/// never share a temporary name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the new file into {}", path.display()))?;
    Ok(())
}
