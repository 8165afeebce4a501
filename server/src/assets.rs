//! What the binary carries: the default model pack and the built-in
//! workflows, so `anyforge` works wherever it is installed. A source
//! checkout's `assets/` folder wins (edits there need no rebuild); an
//! installed binary unpacks its copy of the pack once into the cache folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use include_dir::{include_dir, Dir};

static DEFAULT_PACK: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../assets/packs/default");
static WORKFLOWS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../assets/workflows");

/// The source tree's default pack, when the binary runs from a checkout.
fn source_pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/packs/default")
}

/// The default pack's folder: the checkout's, or the embedded pack
/// unpacked under `$XDG_CACHE_HOME/anyforge/packs` (once per pack version).
pub fn default_pack() -> Result<PathBuf> {
    let source = source_pack();
    if source.join(pipelines::pack::MANIFEST).is_file() {
        return Ok(source);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("anyforge/packs");
    unpack(&DEFAULT_PACK, &cache)
}

/// Unpacks `pack` into `root/default-<digest of its manifest>` unless it is
/// there already; written to a temporary folder first and renamed, so a
/// half-written pack is never used.
fn unpack(pack: &Dir<'static>, root: &Path) -> Result<PathBuf> {
    let manifest = pack
        .get_file(pipelines::pack::MANIFEST)
        .context("the embedded default pack has no manifest")?;
    let digest: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(manifest.contents())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let target = root.join(format!("default-{digest}"));
    if target.join(pipelines::pack::MANIFEST).is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(root).with_context(|| root.display().to_string())?;
    let staging = tempfile::tempdir_in(root).with_context(|| root.display().to_string())?;
    pack.extract(staging.path()).with_context(|| {
        format!(
            "unpacking the default pack into {}",
            staging.path().display()
        )
    })?;
    match std::fs::rename(staging.path(), &target) {
        Ok(()) => {
            // Renamed away: nothing left for the guard to delete.
            let _ = staging.keep();
        }
        // Another process unpacked it first.
        Err(_) if target.join(pipelines::pack::MANIFEST).is_file() => {}
        Err(e) => return Err(e).with_context(|| target.display().to_string()),
    }
    Ok(target)
}

/// The built-in workflows: name (file stem) and YAML, by name.
pub fn builtin_workflows() -> Vec<(String, &'static str)> {
    let mut all: Vec<(String, &'static str)> = WORKFLOWS
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "yaml"))
        .filter_map(|f| {
            let name = f.path().file_stem()?.to_string_lossy().into_owned();
            Some((name, f.contents_utf8()?))
        })
        .collect();
    all.sort();
    all
}

pub fn builtin_workflow(name: &str) -> Option<&'static str> {
    builtin_workflows()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, yaml)| yaml)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pack_unpacks_once_and_loads() {
        let root = tempfile::tempdir().unwrap();
        let dir = unpack(&DEFAULT_PACK, root.path()).unwrap();
        let pack = pipelines::pack::Pack::load(&dir).unwrap();
        assert_eq!(pack.manifest.name, "anyforge-starter");
        // The second call finds it.
        assert_eq!(unpack(&DEFAULT_PACK, root.path()).unwrap(), dir);
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            1,
            "no staging left"
        );
    }

    #[test]
    fn the_built_in_workflows_are_embedded_and_valid() {
        let names: Vec<String> = builtin_workflows().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["image-edit", "text-to-3d", "text-to-video", "tts"]);
        for (name, yaml) in builtin_workflows() {
            workflows::load_str(yaml, &workflows::WorkflowLimits::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
