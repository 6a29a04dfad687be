//! The cache store: `.kiln/` with `cache/<key>/` entries, `tmp/` for entries being
//! written, `scratch/` for resumable work, `verify/` for `rerun --verify`, `locks/` and
//! `runs/`.
//!
//! Invariant: a folder under `cache/` is complete. An entry is written under `tmp/`,
//! its files fsynced, its `meta.json` written last, and the folder renamed into place;
//! a run killed at any point leaves no entry that looks valid. A lock file per key keeps
//! two runs from writing the same entry.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::plan::key::Key;
use serde::{Deserialize, Serialize};

/// What `meta.json` records about an entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub key: Key,
    pub kind: String,
    /// The stage that first wrote the entry (informational: names are not in the key).
    pub stage: String,
    pub key_inputs: serde_json::Value,
    pub outputs: BTreeMap<String, OutputMeta>,
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub summary: Option<String>,
    pub created: String,
    pub duration_s: f64,
    pub kiln_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputMeta {
    /// `table <schema>` or `files <kind>`.
    pub artifact: String,
    /// blake3 of the output's files (names and bytes).
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub bytes: u64,
    pub files: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive hold on one key; released when dropped.
pub struct KeyLock {
    _file: File,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("cache").join(key)
    }

    pub fn tmp_dir(&self, key: &str) -> PathBuf {
        self.root.join("tmp").join(key)
    }

    /// Survives a killed run of the same key; removed once the entry is committed.
    pub fn scratch_dir(&self, key: &str) -> PathBuf {
        self.root.join("scratch").join(key)
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The entry's metadata, if the entry exists. Reads `meta.json` only.
    pub fn meta(&self, key: &str) -> Option<EntryMeta> {
        let text = fs::read_to_string(self.entry_dir(key).join("meta.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// What is wrong with an entry's files, if anything, against its `meta.json`: each
    /// output holds exactly the files it was committed with, of the same total size (a
    /// directory listing and a `stat` per file, cheap enough for every run); with
    /// `digests`, their content hashes to the recorded digest too.
    pub fn damage(&self, meta: &EntryMeta, digests: bool) -> Option<String> {
        let entry = self.entry_dir(&meta.key);
        for (name, output) in &meta.outputs {
            let dir = entry.join(name);
            let files = match files_under(&dir) {
                Ok(files) => files,
                Err(e) => return Some(format!("output `{name}` cannot be listed: {e}")),
            };
            if files != output.files {
                let missing: Vec<&str> =
                    output.files.iter().filter(|f| !files.contains(f)).map(String::as_str).collect();
                let extra: Vec<&str> = files.iter().filter(|f| !output.files.contains(f)).map(String::as_str).collect();
                let mut what = Vec::new();
                if !missing.is_empty() {
                    what.push(format!("missing {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    what.push(format!("not written by the stage: {}", extra.join(", ")));
                }
                return Some(format!("output `{name}`: {}", what.join("; ")));
            }
            let bytes = size_of(&dir);
            if bytes != output.bytes {
                return Some(format!("output `{name}` holds {bytes} bytes where {} were committed", output.bytes));
            }
            if digests {
                match describe_output(&dir) {
                    Ok((digest, _, _)) if digest != output.digest => {
                        return Some(format!("output `{name}`: its content changed since it was committed"));
                    }
                    Ok(_) => {}
                    Err(e) => return Some(format!("output `{name}` cannot be read: {e}")),
                }
            }
        }
        None
    }

    /// Moves a damaged entry out of the cache, to `damaged/<key>-<time>` (kept for a
    /// look, never read), so the next run recomputes it; returns where it went.
    pub fn quarantine(&self, key: &str) -> io::Result<PathBuf> {
        let _guard = self.guard(true)?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let target = self.root.join("damaged").join(format!("{key}-{stamp}"));
        fs::create_dir_all(target.parent().expect("damaged/"))?;
        fs::rename(self.entry_dir(key), &target)?;
        Ok(target)
    }

    /// Takes the key's lock without waiting; `None` when another run holds it.
    pub fn try_lock(&self, key: &str) -> io::Result<Option<KeyLock>> {
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Takes the key's lock, waiting for another run to release it.
    pub fn lock(&self, key: &str) -> io::Result<KeyLock> {
        let file = self.lock_file(key)?;
        file.lock()?;
        Ok(KeyLock { _file: file })
    }

    /// Held shared by a run while it decides which entries it reads and records them
    /// in its manifest, and exclusively by `gc` while it decides and removes: so gc
    /// never removes an entry a running pipeline has counted on.
    pub fn guard(&self, exclusive: bool) -> io::Result<KeyLock> {
        fs::create_dir_all(&self.root)?;
        let file = open_lock(&self.root.join("gc.lock"))?;
        if exclusive {
            file.lock()?
        } else {
            file.lock_shared()?
        }
        Ok(KeyLock { _file: file })
    }

    /// Held by a run for as long as its process lives (a killed run releases it).
    pub fn run_lock(&self, id: &str) -> io::Result<KeyLock> {
        let dir = self.runs_dir().join(id);
        fs::create_dir_all(&dir)?;
        let file = open_lock(&dir.join("lock"))?;
        file.lock()?;
        Ok(KeyLock { _file: file })
    }

    /// Whether the run's process still holds its lock.
    pub fn run_is_live(&self, id: &str) -> bool {
        let Ok(file) = File::options().write(true).open(self.runs_dir().join(id).join("lock")) else {
            return false;
        };
        matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
    }

    /// Where `rerun --verify` recomputes a stage: beside the cache, never in it.
    pub fn verify_dir(&self, key: &str) -> PathBuf {
        self.root.join("verify").join(key)
    }

    /// The keys of the entries in the cache.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = fs::read_dir(self.root.join("cache"))
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| Key::new(e.file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn lock_file(&self, key: &str) -> io::Result<File> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir)?;
        open_lock(&dir.join(format!("{key}.lock")))
    }

    /// Empties the key's tmp folder and returns it (the caller holds the key's lock).
    pub fn fresh_tmp(&self, key: &str) -> io::Result<PathBuf> {
        let tmp = self.tmp_dir(key);
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(tmp)
    }

    /// Moves a finished tmp folder into the cache: fsync the files, write `meta.json`,
    /// fsync, rename. If an entry of the key exists (a forced rerun), it is replaced.
    pub fn commit(&self, tmp: &Path, meta: &EntryMeta) -> io::Result<()> {
        for file in files_under(tmp)? {
            File::open(tmp.join(&file))?.sync_all()?;
        }
        let meta_path = tmp.join("meta.json");
        fs::write(&meta_path, serde_json::to_string_pretty(meta).expect("meta serializes"))?;
        File::open(&meta_path)?.sync_all()?;
        sync_dir(tmp)?;
        let target = self.entry_dir(&meta.key);
        let parent = target.parent().expect("cache/<key> has a parent");
        fs::create_dir_all(parent)?;
        if target.exists() {
            let trash = self.root.join("tmp").join(format!("{}.replaced", meta.key));
            if trash.exists() {
                fs::remove_dir_all(&trash)?;
            }
            fs::rename(&target, &trash)?;
            fs::rename(tmp, &target)?;
            fs::remove_dir_all(&trash)?;
        } else {
            fs::rename(tmp, &target)?;
        }
        sync_dir(parent)?;
        Ok(())
    }
}

/// What the store remembers of an external file's digest.
#[derive(Debug, Serialize, Deserialize)]
struct FileDigest {
    size: u64,
    modified_ns: u128,
    digest: String,
}

impl Store {
    /// The blake3 digest of a file outside the store, remembered under `files/` by the
    /// file's size and modification time (as DVC does), so status checks do not reread
    /// large unchanged data files.
    pub fn file_digest(&self, path: &Path) -> io::Result<String> {
        let meta = fs::metadata(path)?;
        if meta.is_dir() {
            return self.folder_digest(path);
        }
        if !meta.is_file() {
            // Opening a FIFO would block, reading a device might never end.
            return Err(io::Error::other("not a regular file (a device, FIFO or socket)"));
        }
        let modified_ns = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let absolute = fs::canonicalize(path)?;
        let record = self
            .root
            .join("files")
            .join(format!("{}.json", &blake3::hash(absolute.to_string_lossy().as_bytes()).to_hex()[..32]));
        if let Ok(text) = fs::read_to_string(&record)
            && let Ok(known) = serde_json::from_str::<FileDigest>(&text)
            && known.size == meta.len()
            && known.modified_ns == modified_ns
        {
            return Ok(known.digest);
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(File::open(path)?)?;
        let digest = hasher.finalize().to_hex()[..32].to_string();
        let known = FileDigest { size: meta.len(), modified_ns, digest: digest.clone() };
        // Remembering is an optimization: a store that cannot be written still works.
        if fs::create_dir_all(record.parent().expect("files/")).is_ok() {
            let tmp = record.with_extension("tmp");
            if fs::write(&tmp, serde_json::to_string(&known).expect("serializes")).is_ok() {
                let _ = fs::rename(&tmp, &record);
            }
        }
        Ok(digest)
    }
}

impl Store {
    /// The digest of a folder: of each file's path inside it and content digest, in path
    /// order (so a renamed, added or removed file changes it, as an edited one does).
    fn folder_digest(&self, dir: &Path) -> io::Result<String> {
        let files = kiln_stages::records::files_under(dir)?;
        let mut hasher = blake3::Hasher::new();
        for file in files {
            let relative = file.strip_prefix(dir).unwrap_or(&file);
            hasher.update(relative.to_string_lossy().as_bytes());
            hasher.update(b"\0");
            hasher.update(self.file_digest(&file)?.as_bytes());
            hasher.update(b"\n");
        }
        Ok(hasher.finalize().to_hex()[..32].to_string())
    }
}

/// A lock file, created empty if missing and never truncated (another process may hold it).
fn open_lock(path: &Path) -> io::Result<File> {
    File::options().create(true).truncate(false).write(true).open(path)
}

/// The bytes of the files under `dir` (0 if it does not exist).
pub fn size_of(dir: &Path) -> u64 {
    files_under(dir).unwrap_or_default().iter().filter_map(|f| fs::metadata(dir.join(f)).ok()).map(|m| m.len()).sum()
}

/// Relative paths of the files under `dir`, sorted.
pub fn files_under(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Digest, size and file list of one output folder.
pub fn describe_output(dir: &Path) -> io::Result<(String, u64, Vec<String>)> {
    let files = files_under(dir)?;
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0;
    for name in &files {
        let data = fs::read(dir.join(name))?;
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(data.len() as u64).to_le_bytes());
        hasher.update(&data);
        bytes += data.len() as u64;
    }
    Ok((hasher.finalize().to_hex()[..32].to_string(), bytes, files))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories can be opened and fsynced on Unix; elsewhere renames are the best we have.
    match File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str) -> EntryMeta {
        EntryMeta {
            key: Key::new(key),
            kind: "k".into(),
            stage: "s".into(),
            key_inputs: serde_json::json!({}),
            outputs: BTreeMap::new(),
            metrics: Default::default(),
            summary: None,
            created: "now".into(),
            duration_s: 0.0,
            kiln_version: "0".into(),
        }
    }

    /// A folder source (`source.json` over MATH's `test/<subject>/<n>.json`) is keyed by
    /// every file's path and content.
    #[test]
    fn a_folder_digest_follows_its_files_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join(".kiln"));
        let data = dir.path().join("test");
        fs::create_dir_all(data.join("algebra")).unwrap();
        fs::write(data.join("algebra/1.json"), "{}").unwrap();
        fs::write(data.join("algebra/2.json"), "[]").unwrap();
        let first = store.file_digest(&data).unwrap();
        assert_eq!(store.file_digest(&data).unwrap(), first, "stable");
        fs::write(data.join("algebra/2.json"), "[1]").unwrap();
        let edited = store.file_digest(&data).unwrap();
        assert_ne!(edited, first);
        fs::rename(data.join("algebra/2.json"), data.join("algebra/3.json")).unwrap();
        let renamed = store.file_digest(&data).unwrap();
        assert_ne!(renamed, edited);
        fs::create_dir_all(data.join("geometry")).unwrap();
        fs::write(data.join("geometry/1.json"), "{}").unwrap();
        assert_ne!(store.file_digest(&data).unwrap(), renamed);
    }

    #[test]
    fn an_entry_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let tmp = store.fresh_tmp("abc").unwrap();
        fs::create_dir_all(tmp.join("out")).unwrap();
        fs::write(tmp.join("out/a.txt"), "hello").unwrap();
        assert!(store.meta("abc").is_none());
        store.commit(&tmp, &meta("abc")).unwrap();
        assert_eq!(store.meta("abc").unwrap().key, Key::new("abc"));
        assert!(!tmp.exists());
        assert_eq!(fs::read_to_string(store.entry_dir("abc").join("out/a.txt")).unwrap(), "hello");
    }

    #[test]
    fn a_lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let held = store.try_lock("k").unwrap();
        assert!(held.is_some());
        assert!(store.try_lock("k").unwrap().is_none());
        drop(held);
        assert!(store.try_lock("k").unwrap().is_some());
    }

    #[test]
    fn output_digests_depend_on_names_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "1").unwrap();
        let (d1, bytes, files) = describe_output(dir.path()).unwrap();
        assert_eq!((bytes, files), (1, vec!["a".to_string()]));
        fs::write(dir.path().join("a"), "2").unwrap();
        assert_ne!(describe_output(dir.path()).unwrap().0, d1);
    }
}
