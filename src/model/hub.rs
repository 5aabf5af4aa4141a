//! Fetching a Hugging Face model repository through `hf-hub`, into the same
//! cache layout the hub's own tools use (`$HF_HOME/hub`), so a model
//! downloaded once (by sqlagent or by `huggingface-cli`) is reused offline.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// The model used when none is configured and the user asks for the hub.
pub const DEFAULT_REPO: &str = "meta-llama/Meta-Llama-3-8B-Instruct";

/// Files of a model repo that sqlagent needs besides the weights.
const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "tokenizer_config.json"];

/// Further attempts after a download breaks off; each resumes where the
/// file stopped (a range request), after a backoff.
const DOWNLOAD_RETRIES: usize = 5;

/// Where the hub's files are cached, as huggingface_hub decides it:
/// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => Cache::new(PathBuf::from(dir)),
        None => Cache::from_env(),
    }
}

/// Where the token a request sends comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenSource {
    /// Given by the caller (`HF_TOKEN`).
    Given,
    /// The file `huggingface-cli login` writes (`$HF_HOME/token`).
    LoginFile(PathBuf),
    /// None: public repos only.
    None,
}

impl TokenSource {
    /// Where the token comes from, and the token: `given`, else the login
    /// file's (read once, here).
    fn of(given: Option<String>) -> (Self, Option<String>) {
        if given.is_some() {
            return (TokenSource::Given, given);
        }
        // The login file stays under HF_HOME when HF_HUB_CACHE moves the
        // cache, as huggingface_hub keeps it.
        let file = Cache::from_env().token_path();
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => {
                (TokenSource::LoginFile(file), Some(text.trim().to_string()))
            }
            _ => (TokenSource::None, None),
        }
    }
}

/// A hub client for `repo`'s requests: the cache where huggingface_hub
/// puts it, resumed downloads, and the token (HF_TOKEN's, else the login
/// file's; passing none to hf-hub would drop the one it read itself).
fn hub_api(
    repo: &str,
    token: Option<String>,
    progress: bool,
) -> Result<(hf_hub::api::sync::Api, TokenSource)> {
    let (source, token) = TokenSource::of(token);
    let mut builder = ApiBuilder::from_env()
        .with_cache_dir(cache().path().clone())
        .with_progress(progress)
        .with_retries(DOWNLOAD_RETRIES);
    if token.is_some() {
        builder = builder.with_token(token);
    }
    let api = builder.build().map_err(|e| hub_error(repo, e, &source))?;
    Ok((api, source))
}

/// Whether `spec` looks like a hub repo id (`owner/name`, no path that exists).
pub fn looks_like_repo_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        && !Path::new(spec).exists()
}

/// Returns a directory holding `config.json`, the tokenizer files and the
/// safetensors weights of `repo` (at `revision`, default `main`), from the
/// cache when complete there, else downloaded. `token` authorises gated
/// repos (Llama 3 needs one).
pub fn fetch(
    repo: &str,
    revision: Option<&str>,
    token: Option<String>,
    progress: bool,
) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main").to_string();
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision);
    if let Some(dir) = complete_in_cache(&hub_repo) {
        return Ok(dir);
    }
    let (api, source) = hub_api(repo, token, progress)?;
    let api_repo = api.repo(hub_repo);
    let get = |file: &str| api_repo.get(file).map_err(|e| hub_error(repo, e, &source));
    let config = get("config.json")?;
    for f in &REQUIRED[1..] {
        get(f)?;
    }
    let _ = api_repo.get("generation_config.json");
    match api_repo.get("model.safetensors.index.json") {
        Ok(index) => {
            for shard in shard_names(&index)? {
                get(&shard)?;
            }
        }
        Err(_) => {
            get("model.safetensors")?;
        }
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Hub {
            repo: repo.to_string(),
            message: "downloaded files have no parent directory".into(),
        })
}

/// Which GGUF file of a hub repo to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GgufChoice {
    /// The file whose name carries this quantization (`Q4_K_M`), as
    /// `owner/repo:Q4_K_M` asks.
    Quant(String),
    /// This file of the repo.
    File(String),
}

/// The GGUF file of `repo` that `choice` names, from the cache when it is
/// there, else downloaded (the repo's file list read first to choose).
pub fn fetch_gguf(
    repo: &str,
    choice: &GgufChoice,
    revision: Option<&str>,
    token: Option<String>,
    progress: bool,
) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main").to_string();
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision);
    if let Some(path) = gguf_in_cache(&hub_repo, choice) {
        return Ok(path);
    }
    let (api, source) = hub_api(repo, token, progress)?;
    let api_repo = api.repo(hub_repo);
    let listed: Vec<String> = api_repo
        .info()
        .map_err(|e| hub_error(repo, e, &source))?
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .collect();
    let parts = choose_gguf(repo, &listed, choice)?;
    let mut paths = Vec::new();
    for part in &parts {
        paths.push(
            api_repo
                .get(part)
                .map_err(|e| hub_error(repo, e, &source))?,
        );
    }
    // A split file loads from its first part, the others beside it.
    Ok(paths.remove(0))
}

/// The GGUF file (all its parts, when split) that `choice` picks among
/// `files`.
fn choose_gguf(repo: &str, files: &[String], choice: &GgufChoice) -> Result<Vec<String>> {
    let ggufs: Vec<&String> = files
        .iter()
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    let fail = |message: String| Error::Hub {
        repo: repo.to_string(),
        message,
    };
    // Split files grouped under their first part's stem.
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &ggufs {
        groups.entry(split_stem(f)).or_default().push((*f).clone());
    }
    for parts in groups.values_mut() {
        parts.sort();
    }
    let listing = || {
        groups
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if groups.is_empty() {
        return Err(fail("the repo has no .gguf file".into()));
    }
    let matches: Vec<&Vec<String>> = match choice {
        GgufChoice::File(name) => groups
            .iter()
            .filter(|(stem, parts)| *stem == name || parts.contains(name))
            .map(|(_, parts)| parts)
            .collect(),
        GgufChoice::Quant(quant) => groups
            .iter()
            .filter(|(stem, _)| names_quant(stem, quant))
            .map(|(_, parts)| parts)
            .collect(),
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(fail(format!(
            "no .gguf file {}; the repo has: {}",
            match choice {
                GgufChoice::File(name) => format!("named {name}"),
                GgufChoice::Quant(q) => format!("for {q}"),
            },
            listing()
        ))),
        several => Err(fail(format!(
            "several .gguf files match: {}; name one of them",
            several
                .iter()
                .map(|parts| parts[0].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A file name without a split suffix (`x-00001-of-00002.gguf` → `x.gguf`).
fn split_stem(name: &str) -> String {
    let re = regex::Regex::new(r"(?i)-\d{5}-of-\d{5}(\.gguf)$").expect("valid regex");
    re.replace(name, "$1").into_owned()
}

/// Whether a GGUF file name carries `quant` as a whole word (`Q4_K` names
/// `…-Q4_K.gguf`, not `…-Q4_K_M.gguf`).
fn names_quant(file: &str, quant: &str) -> bool {
    let file = file.to_ascii_lowercase();
    let quant = quant.to_ascii_lowercase();
    let stem = file.strip_suffix(".gguf").unwrap_or(&file);
    let base = stem.rsplit('/').next().unwrap_or(stem);
    base.split(['-', '.']).any(|word| word == quant)
}

/// The chosen GGUF file when the cached snapshot holds it.
fn gguf_in_cache(repo: &Repo, choice: &GgufChoice) -> Option<PathBuf> {
    let cache_repo = cache().repo(repo.clone());
    match choice {
        GgufChoice::File(name) => cache_repo.get(name),
        GgufChoice::Quant(_) => {
            // The snapshot the revision points to, as the hub cache lays it out.
            let folder = cache().path().join(repo.folder_name());
            let commit = std::fs::read_to_string(folder.join("refs").join(repo.revision())).ok()?;
            let snapshot = folder.join("snapshots").join(commit.trim());
            let files: Vec<String> = std::fs::read_dir(&snapshot)
                .ok()?
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            let parts = choose_gguf(repo.url().as_str(), &files, choice).ok()?;
            Some(snapshot.join(&parts[0]))
        }
    }
}

fn complete_in_cache(repo: &Repo) -> Option<PathBuf> {
    let cache = cache().repo(repo.clone());
    let config = cache.get("config.json")?;
    for f in &REQUIRED[1..] {
        cache.get(f)?;
    }
    if let Some(index) = cache.get("model.safetensors.index.json") {
        for shard in shard_names(&index).ok()? {
            cache.get(&shard)?;
        }
    } else {
        cache.get("model.safetensors")?;
    }
    config.parent().map(Path::to_path_buf)
}

/// The `weight_map` of a `model.safetensors.index.json`: each tensor and the
/// shard file (a plain `.safetensors` name beside the index) that holds it.
pub fn weight_map(index: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(index, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model(index, "no \"weight_map\" object"))?;
    let mut entries = Vec::with_capacity(map.len().min(4096));
    for (tensor, file) in map {
        let name = file
            .as_str()
            .filter(|n| is_shard_name(n))
            .ok_or_else(|| {
                Error::model(
                    index,
                    format!(
                        "\"weight_map\" puts {tensor:?} in {file}, not the name of a .safetensors file beside the index"
                    ),
                )
            })?;
        entries.push((tensor.clone(), name.to_string()));
    }
    Ok(entries)
}

/// The distinct shard file names listed in a `model.safetensors.index.json`.
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = weight_map(index)?.into_iter().map(|(_, f)| f).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Error::model(index, "\"weight_map\" lists no shard"));
    }
    Ok(names)
}

/// Whether an index's file name is a plain `.safetensors` name (no folder,
/// so that an index cannot point outside its directory).
fn is_shard_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(parts.next(), Some(std::path::Component::Normal(_)))
        && parts.next().is_none()
        && !name.contains(['/', '\\'])
        && name.ends_with(".safetensors")
}

/// The safetensors files of a Hugging Face model directory: the shards named
/// by `model.safetensors.index.json`, else `model.safetensors`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let mut files = Vec::new();
        for name in shard_names(&index)? {
            let file = dir.join(&name);
            if !file.is_file() {
                return Err(Error::model(
                    &index,
                    format!("lists {name}, which is not in {}", dir.display()),
                ));
            }
            files.push(file);
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(Error::model(
        dir,
        "no model.safetensors or model.safetensors.index.json in this directory",
    ))
}

fn hub_error(repo: &str, e: ApiError, token: &TokenSource) -> Error {
    let status = match &e {
        ApiError::RequestError(re) => match re.as_ref() {
            ureq::Error::Status(code, _) => Some(*code),
            ureq::Error::Transport(_) => None,
        },
        ApiError::TooManyRetries(inner) => match inner.as_ref() {
            ApiError::RequestError(re) => match re.as_ref() {
                ureq::Error::Status(code, _) => Some(*code),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    let message = match (status, token) {
        (Some(401 | 403), TokenSource::Given) => format!(
            "access denied ({e}): the token in HF_TOKEN has no access; accept the model's license at https://huggingface.co/{repo} with the account the token belongs to"
        ),
        (Some(401 | 403), TokenSource::LoginFile(file)) => format!(
            "access denied ({e}): the token saved by `huggingface-cli login` ({}) has no access; accept the model's license at https://huggingface.co/{repo} with that account, or set HF_TOKEN",
            file.display()
        ),
        (Some(401 | 403), TokenSource::None) => format!(
            "access denied ({e}): the repo is gated; accept its license at https://huggingface.co/{repo} and set HF_TOKEN (in the environment or a .env file)"
        ),
        (Some(404), _) => format!("not found ({e}): check the repo id, or name a local model directory or .gguf file instead"),
        (Some(_), _) => format!("download failed: {e}"),
        (None, _) => format!(
            "cannot reach the Hugging Face hub ({e}). Offline? Copy the model directory (config.json, tokenizer.json, *.safetensors) or a .gguf file to this machine and name it as the model"
        ),
    };
    Error::Hub {
        repo: repo.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_told_apart_from_paths() {
        assert!(looks_like_repo_id("meta-llama/Meta-Llama-3-8B-Instruct"));
        assert!(looks_like_repo_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(!looks_like_repo_id("model.gguf"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("/abs/path"));
        assert!(
            !looks_like_repo_id("src/model"),
            "an existing path is not a repo id"
        );
    }

    #[test]
    fn a_quant_picks_one_gguf_file_and_names_the_others_when_it_cannot() {
        let files: Vec<String> = [
            "README.md",
            "Llama-3-8B-Instruct-Q4_K_M.gguf",
            "Llama-3-8B-Instruct-Q4_K_S.gguf",
            "Llama-3-8B-Instruct-Q8_0.gguf",
            "Llama-3-8B-Instruct-f16-00001-of-00002.gguf",
            "Llama-3-8B-Instruct-f16-00002-of-00002.gguf",
        ]
        .map(String::from)
        .to_vec();
        let pick = |c: GgufChoice| choose_gguf("acme/l3", &files, &c);
        assert_eq!(
            pick(GgufChoice::Quant("q4_k_m".into())).unwrap(),
            ["Llama-3-8B-Instruct-Q4_K_M.gguf"]
        );
        assert_eq!(
            pick(GgufChoice::Quant("F16".into())).unwrap(),
            [
                "Llama-3-8B-Instruct-f16-00001-of-00002.gguf",
                "Llama-3-8B-Instruct-f16-00002-of-00002.gguf"
            ]
        );
        let none = pick(GgufChoice::Quant("Q4_K".into()))
            .unwrap_err()
            .to_string();
        assert!(none.contains("no .gguf file for Q4_K"), "{none}");
        assert!(none.contains("Llama-3-8B-Instruct-Q8_0.gguf"), "{none}");
        assert_eq!(
            pick(GgufChoice::File("Llama-3-8B-Instruct-Q8_0.gguf".into())).unwrap(),
            ["Llama-3-8B-Instruct-Q8_0.gguf"]
        );
        let several = choose_gguf(
            "acme/l3",
            &["a-Q8_0.gguf".to_string(), "b-Q8_0.gguf".to_string()],
            &GgufChoice::Quant("Q8_0".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            several.contains("several .gguf files match: a-Q8_0.gguf, b-Q8_0.gguf"),
            "{several}"
        );
    }

    #[test]
    fn shard_names_are_distinct_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("model.safetensors.index.json");
        std::fs::write(
            &index,
            r#"{"metadata":{},"weight_map":{"a":"model-00002-of-00002.safetensors",
               "b":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(
            shard_names(&index).unwrap(),
            vec![
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        std::fs::write(&index, "{}").unwrap();
        assert!(shard_names(&index)
            .unwrap_err()
            .to_string()
            .contains("weight_map"));
        // Only plain .safetensors names beside the index.
        for bad in [
            r#""../outside.safetensors""#,
            r#""sub/x.safetensors""#,
            "7",
            r#""x.bin""#,
        ] {
            std::fs::write(&index, format!(r#"{{"weight_map":{{"a":{bad}}}}}"#)).unwrap();
            let e = shard_names(&index).unwrap_err().to_string();
            assert!(
                e.contains("model.safetensors.index.json") && e.contains("beside the index"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_shard_the_index_lists_but_the_directory_lacks_is_blamed_on_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("model.safetensors.index.json");
        std::fs::write(
            &index,
            r#"{"weight_map":{"a":"model-00001-of-00001.safetensors"}}"#,
        )
        .unwrap();
        let e = safetensors_files(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors.index.json")
                && e.contains("lists model-00001-of-00001.safetensors, which is not in"),
            "{e}"
        );
    }
}
