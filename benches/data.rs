//! Data-stage benchmarks, each against a named baseline measured in the same run:
//!
//! - dedup: kiln's MinHash-LSH against Python datasketch's `MinHash` + `MinHashLSH` with
//!   the same parameters (256 permutations, word 5-grams, threshold 0.7) on the same
//!   texts;
//! - decontaminate: 100,000 training texts against 10,000 evaluation texts (13-grams),
//!   against a straightforward Python set-of-n-grams implementation.
//!
//! Run with `just bench` (which installs datasketch); `cargo test --bench data` builds it
//! with the dev profile the rest of kiln uses.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use kiln_stages::decontaminate::find_overlaps;
use kiln_stages::dedup::{Params, find_duplicates};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Texts of 30 to 60 words drawn from a 5,000-word vocabulary; every tenth is a near
/// duplicate of another (two words changed), so overlaps are the planted ones.
fn texts(n: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let vocabulary: Vec<String> = (0..5000).map(|i| format!("w{i:x}{}", ["a", "e", "o", "u"][i % 4])).collect();
    let mut out: Vec<Vec<String>> = (0..n)
        .map(|_| (0..rng.random_range(30..60)).map(|_| vocabulary[rng.random_range(0..5000)].clone()).collect())
        .collect();
    for i in (0..n).step_by(10) {
        let mut copy = out[(i + 5) % n].clone();
        for _ in 0..2 {
            let at = rng.random_range(0..copy.len());
            copy[at] = vocabulary[rng.random_range(0..5000)].clone();
        }
        out[i] = copy;
    }
    out.into_iter().map(|w| w.join(" ")).collect()
}

/// Runs a baseline; it prints its count of removed rows, then its seconds.
fn python(script: &str, input: &str) -> Option<(usize, f64)> {
    let out = Command::new("python3").arg("-c").arg(script).arg(input).output().ok()?;
    if !out.status.success() {
        eprintln!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.trim().lines();
    Some((lines.next()?.parse().ok()?, lines.next()?.parse().ok()?))
}

const DATASKETCH: &str = r#"
import sys, json, time, re
from datasketch import MinHash, MinHashLSH
texts = [json.loads(l) for l in open(sys.argv[1])]
def words(t):
    return [w for w in re.sub(r"[^\w\s]", " ", t.lower()).split() if w]
start = time.perf_counter()
lsh = MinHashLSH(threshold=0.7, num_perm=256)
hashes = []
for i, t in enumerate(texts):
    w = words(t)
    m = MinHash(num_perm=256)
    m.update_batch([" ".join(w[j:j+5]).encode() for j in range(max(len(w) - 4, 0))])
    hashes.append(m)
    lsh.insert(i, m)
removed = set()
for i, m in enumerate(hashes):
    if i in removed:
        continue
    for j in lsh.query(m):
        if j > i and hashes[i].jaccard(hashes[j]) >= 0.7:
            removed.add(j)
print(len(removed))
print(time.perf_counter() - start)
"#;

const NGRAMS: &str = r#"
import sys, json, time, re
data = [json.loads(l) for l in open(sys.argv[1])]
train, evals = data[0], data[1]
def words(t):
    return [w for w in re.sub(r"[^\w\s]", " ", t.lower()).split() if w]
start = time.perf_counter()
index = set()
for t in evals:
    w = words(t)
    for j in range(len(w) - 12):
        index.add(tuple(w[j:j+13]))
dropped = 0
for t in train:
    w = words(t)
    if any(tuple(w[j:j+13]) in index for j in range(len(w) - 12)):
        dropped += 1
print(dropped)
print(time.perf_counter() - start)
"#;

fn write_lines(texts: &[String]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    for t in texts {
        writeln!(file, "{}", serde_json::to_string(t).expect("json")).expect("write");
    }
    file
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("kiln data benchmarks ({threads} threads)");

    let n = 20_000;
    let docs = texts(n, 1);
    let ids: Vec<i64> = (0..n as i64).collect();
    let start = Instant::now();
    let removed = find_duplicates(&ids, &docs, &Params { exact: false, ..Params::default() }, 7);
    let kiln = start.elapsed().as_secs_f64();
    let file = write_lines(&docs);
    match python(DATASKETCH, file.path().to_str().expect("utf-8 path")) {
        Some((count, base)) => println!(
            "dedup (MinHash-LSH, {n} texts, 256 permutations, 5-grams, threshold 0.7): kiln {kiln:.2} s ({} removed), datasketch {base:.2} s ({count} removed): {:.1}x faster",
            removed.len(),
            base / kiln
        ),
        None => println!(
            "dedup: kiln {kiln:.2} s ({} removed); datasketch baseline unavailable (pip install datasketch)",
            removed.len()
        ),
    }

    let train = texts(100_000, 2);
    let mut eval = texts(10_000, 3);
    // A share of the evaluation set leaks into training.
    for i in (0..eval.len()).step_by(50) {
        eval[i] = train[i * 7].clone();
    }
    let start = Instant::now();
    let hits = find_overlaps(&train, &eval, 13);
    let kiln = start.elapsed().as_secs_f64();
    let pair = serde_json::to_string(&(&train, &eval)).expect("json");
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(pair.as_bytes()).expect("write");
    let script =
        NGRAMS.replace("data = [json.loads(l) for l in open(sys.argv[1])]", "data = json.load(open(sys.argv[1]))");
    match python(&script, file.path().to_str().expect("utf-8 path")) {
        Some((count, base)) => println!(
            "decontaminate (100,000 x 10,000, 13-grams): kiln {kiln:.2} s ({} dropped), Python n-gram set {base:.2} s ({count} dropped): {:.1}x faster",
            hits.len(),
            base / kiln
        ),
        None => println!("decontaminate: kiln {kiln:.2} s ({} dropped); Python baseline failed", hits.len()),
    }
}
