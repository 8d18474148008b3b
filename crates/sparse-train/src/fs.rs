//! Crash-safe file writes.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// The name prefix of the temporary files [`atomic_write`] creates (a run directory's
/// leftovers from a killed writer are removed on resume).
pub const TMP_PREFIX: &str = ".tmp-";

/// Writes `path` through a uniquely named temporary file in the same directory, synced and
/// renamed over the target, so a crash never leaves a partial file and concurrent writers
/// never share a temporary name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))?;
    // On an error the temporary file is removed when `tmp` drops.
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| {
            format!(
                "{}: cannot write {} bytes (disk full?); the previous file, if any, is unchanged",
                path.display(),
                bytes.len()
            )
        })?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the new file into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::atomic_write;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.json");
        atomic_write(&p, b"first").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("summary.json")]);
        let missing = dir.path().join("no-such-dir").join("x");
        let err = atomic_write(&missing, b"x").unwrap_err().to_string();
        assert!(err.contains("no-such-dir"), "{err}");
    }
}
