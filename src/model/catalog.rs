//! What can be loaded without a network: the GGUF files and model
//! directories under a folder (`models/`), and the repos in the hub cache,
//! each with its format, size and weight type. Headers only are read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use serde::Serialize;

use super::hub;

/// Longest safetensors header read (the format's own limit is 100 MB).
const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;

/// Folders deep that the model folder is searched.
const MAX_DEPTH: usize = 3;

/// One model found on this machine.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocalModel {
    /// What `--model` takes to load it: a path, or a hub repo id.
    pub name: String,
    /// Where its files are.
    pub path: PathBuf,
    /// `gguf` or `safetensors`.
    pub format: &'static str,
    /// Bytes of weights.
    pub bytes: u64,
    /// The type most of its weights are stored in (`q4_1`, `q8_0`, `bf16`…).
    pub weights: String,
    /// Where it was found: `folder` or `hub cache`.
    pub origin: &'static str,
    /// What keeps it from loading (a missing file, an unreadable header).
    pub problem: Option<String>,
}

/// The models under `folder` (GGUF files and Hugging Face directories, a
/// few levels deep) and in the hub cache at `hub_cache`, by name. Folders
/// that do not exist hold nothing.
pub fn local_models(folder: &Path, hub_cache: &Path) -> Vec<LocalModel> {
    let mut found = Vec::new();
    walk(folder, 0, &mut found);
    found.extend(hub_repos(hub_cache));
    found.sort_by(|a, b| (a.origin, &a.name).cmp(&(b.origin, &b.name)));
    found
}

/// [`local_models`] under `folder` and the hub cache the environment names.
pub fn local_models_here(folder: &Path) -> Vec<LocalModel> {
    local_models(folder, hub::cache().path())
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<LocalModel>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    if dir.join("config.json").is_file() {
        found.push(safetensors_dir(dir, dir.display().to_string(), "folder"));
    }
    for path in paths {
        if path.is_file() && is_gguf(&path) {
            found.push(gguf(&path, path.display().to_string(), "folder"));
        } else if path.is_dir() && depth < MAX_DEPTH {
            walk(&path, depth + 1, found);
        }
    }
}

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The repos of a hub cache (`models--owner--name/snapshots/COMMIT/`), at
/// the commit `refs/main` names (else the newest snapshot).
fn hub_repos(cache: &Path) -> Vec<LocalModel> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(cache) else {
        return found;
    };
    let mut repos: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    repos.sort();
    for repo_dir in repos {
        let Some(repo) = repo_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("models--"))
            .map(|n| n.replacen("--", "/", 1))
        else {
            continue;
        };
        let Some(snapshot) = snapshot_of(&repo_dir) else {
            continue;
        };
        if snapshot.join("config.json").is_file() {
            found.push(safetensors_dir(&snapshot, repo.clone(), "hub cache"));
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&snapshot)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_gguf(p))
            .collect();
        files.sort();
        for file in files {
            found.push(gguf(&file, file.display().to_string(), "hub cache"));
        }
    }
    found
}

fn snapshot_of(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo_dir.join("refs/main")) {
        let dir = snapshots.join(commit.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn gguf(path: &Path, name: String, origin: &'static str) -> LocalModel {
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let (weights, problem) = match gguf_weight_type(path) {
        Ok(t) => (t, None),
        Err(why) => (String::new(), Some(why)),
    };
    LocalModel {
        name,
        path: path.to_path_buf(),
        format: "gguf",
        bytes,
        weights,
        origin,
        problem,
    }
}

/// The type of most weight elements of a GGUF file (matrices only).
fn gguf_weight_type(path: &Path) -> std::result::Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| format!("not a readable GGUF file: {e}"))?;
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for info in content.tensor_infos.values() {
        if info.shape.dims().len() >= 2 {
            let name = super::ggml_type_name(info.ggml_dtype);
            *by_type.entry(name).or_default() += info.shape.elem_count() as u64;
        }
    }
    most(by_type).ok_or_else(|| "no weight matrices".to_string())
}

fn most(by_type: BTreeMap<String, u64>) -> Option<String> {
    by_type.into_iter().max_by_key(|(_, n)| *n).map(|(t, _)| t)
}

fn safetensors_dir(dir: &Path, name: String, origin: &'static str) -> LocalModel {
    let mut model = LocalModel {
        name,
        path: dir.to_path_buf(),
        format: "safetensors",
        bytes: 0,
        weights: String::new(),
        origin,
        problem: None,
    };
    let missing: Vec<&str> = ["tokenizer.json"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    let files = match hub::safetensors_files(dir) {
        Ok(files) => files,
        Err(e) => {
            model.problem = Some(e.to_string());
            return model;
        }
    };
    let mut by_type = BTreeMap::new();
    let mut absent = Vec::new();
    for file in &files {
        match std::fs::metadata(file) {
            Ok(m) => model.bytes += m.len(),
            Err(_) => {
                absent.push(file.file_name().map_or_else(
                    || file.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ));
                continue;
            }
        }
        if let Err(why) = safetensors_types(file, &mut by_type) {
            model.problem = Some(format!("{}: {why}", file.display()));
        }
    }
    model.weights = most(by_type).unwrap_or_default();
    if !absent.is_empty() || !missing.is_empty() {
        let mut all: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
        all.extend(absent);
        model.problem = Some(format!("missing {}", all.join(", ")));
    }
    model
}

/// The weight elements a safetensors file's header lists.
pub fn safetensors_elements(path: &Path) -> std::result::Result<u64, String> {
    let mut by_type = BTreeMap::new();
    safetensors_types(path, &mut by_type)?;
    Ok(by_type.values().fold(0, |all, n| all.saturating_add(*n)))
}

/// Adds the element count of each dtype in a safetensors file's header.
/// Read by hand: the safetensors crate's `read_metadata` wants the whole
/// file in memory, and only the header is needed here.
fn safetensors_types(
    path: &Path,
    by_type: &mut BTreeMap<String, u64>,
) -> std::result::Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| "shorter than a safetensors header".to_string())?;
    let n = u64::from_le_bytes(len);
    if n > MAX_SAFETENSORS_HEADER || n > size.saturating_sub(8) {
        return Err(format!("header of {n} bytes in a file of {size}"));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format!("header is not JSON: {e}"))?;
    let tensors = json.as_object().ok_or("header is not a JSON object")?;
    for (name, info) in tensors {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info["dtype"].as_str().unwrap_or("?").to_lowercase();
        let shape = &info["shape"];
        let sizes = shape
            .as_array()
            .ok_or_else(|| format!("tensor {name} has no shape"))?;
        let mut count: u64 = 1;
        for size in sizes {
            count = size
                .as_u64()
                .and_then(|d| count.checked_mul(d))
                .ok_or_else(|| {
                    format!("tensor {name}: shape {shape} is not a list of sizes a file can hold")
                })?;
        }
        let total = by_type.entry(dtype).or_default();
        *total = total.saturating_add(count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_too_big_to_count_is_a_problem_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{0},{0},{0}],"data_offsets":[0,4]}}}}"#,
            u64::MAX / 2
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        std::fs::write(&path, &bytes).unwrap();
        let why = safetensors_elements(&path).unwrap_err();
        assert!(why.contains("tensor w: shape"), "{why}");
    }

    #[test]
    fn a_hub_cache_and_a_folder_are_listed_with_what_keeps_a_model_from_loading() {
        let tmp = tempfile::tempdir().unwrap();
        // A folder: a broken GGUF and a directory whose weights are absent.
        let folder = tmp.path().join("models");
        std::fs::create_dir_all(folder.join("half")).unwrap();
        std::fs::write(folder.join("broken.gguf"), b"GGUF\x03\x00").unwrap();
        std::fs::write(folder.join("half/config.json"), "{}").unwrap();
        // A hub cache: one repo, a safetensors snapshot of bf16 weights.
        let cache = tmp.path().join("hub");
        let snap = cache.join("models--acme--tiny/snapshots/abc");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(cache.join("models--acme--tiny/refs")).unwrap();
        std::fs::write(cache.join("models--acme--tiny/refs/main"), "abc").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(snap.join("tokenizer.json"), "{}").unwrap();
        let header = br#"{"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 12]);
        std::fs::write(snap.join("model.safetensors"), &bytes).unwrap();

        let found = local_models(&folder, &cache);
        let names: Vec<&str> = found.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        let broken = found
            .iter()
            .find(|m| m.name.ends_with("broken.gguf"))
            .unwrap();
        assert!(broken
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("not a readable GGUF")));
        let half = found.iter().find(|m| m.name.ends_with("half")).unwrap();
        assert!(half.problem.is_some(), "{half:?}");
        let repo = found.iter().find(|m| m.name == "acme/tiny").unwrap();
        assert_eq!(
            (repo.format, repo.weights.as_str(), repo.origin, repo.bytes),
            ("safetensors", "bf16", "hub cache", bytes.len() as u64)
        );
        assert_eq!(repo.problem, None, "{names:?}");
    }

    #[test]
    fn a_header_longer_than_its_file_is_a_problem_not_an_allocation() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, bytes).unwrap();
        let mut by_type = BTreeMap::new();
        let why = safetensors_types(&path, &mut by_type).unwrap_err();
        assert!(why.contains("header of"), "{why}");
    }
}
