//! Data-stage benchmarks, each against a named baseline measured in the same run:
//!
//! - dedup: kiln's MinHash-LSH against Python datasketch's `MinHash` + `MinHashLSH` with
//!   the same parameters (256 permutations, word 5-grams, threshold 0.7) on the same
//!   texts;
//! - decontaminate: 100,000 training texts against 10,000 evaluation texts (13-grams),
//!   against a straightforward Python set-of-n-grams implementation;
//! - pack: 1,000,000 sequences of log-normal lengths (median 148 tokens) into rows of
//!   8192 by best-fit-decreasing, then the five columns the stage writes (ids, labels,
//!   positions, padded to 8192; seq_lens; doc_ids), against TRL's
//!   `pack_dataset(strategy="bfd")` on the same lengths (one map batch, so both pack
//!   globally; TRL's rows hold the ids unpadded, less than kiln assembles); rows and
//!   efficiency of each;
//! - tokenize: the `tokenize` stage (Parquet in, ids and masks, Parquet out) against the
//!   same tokenizer's `encode_batch` on the same texts with nothing else.
//!
//! Run with `just bench` (which installs datasketch and TRL); `cargo test --bench data`
//! builds it with the dev profile the rest of kiln uses.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use kiln_stages::decontaminate::find_overlaps;
use kiln_stages::dedup::{Params, find_duplicates};
use kiln_stages::pack::{Algorithm, Sequence, assemble_all, lower_bound, pack_lengths};
use kiln_stages::template::{Message, Template};
use kiln_stages::tokenize::Tokenize;
use kiln_stages::{testing, tokenizer_file, tokenizer_train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// The allocator the kiln binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let python = std::env::var("KILN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python).arg("-c").arg(script).arg(input).output().ok()?;
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

const TRL_PACK: &str = r#"
import sys, json, time
import numpy as np, pyarrow as pa
from datasets import Dataset
from datasets.table import InMemoryTable
from trl.data_utils import pack_dataset
lengths = np.array(json.load(open(sys.argv[1])), dtype=np.int64)
seq_len = 8192
offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
ids = pa.LargeListArray.from_arrays(offsets, pa.array(np.arange(offsets[-1], dtype=np.int32) % 50000))
ds = Dataset(InMemoryTable(pa.table({"input_ids": ids})))
start = time.perf_counter()
packed = pack_dataset(ds, seq_len, strategy="bfd", map_kwargs={"batch_size": len(ds)})
seconds = time.perf_counter() - start
print(len(packed))
print(seconds)
"#;

/// Log-normal lengths (median e^mu), clamped to [1, cap].
fn log_normal(n: usize, seed: u64, mu: f64, sigma: f64, cap: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
            let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            ((mu + sigma * normal).exp() as usize).clamp(1, cap)
        })
        .collect()
}

fn bench_pack() {
    let (n, seq_len) = (1_000_000, 8192);
    let lengths = log_normal(n, 4, 5.0, 1.0, seq_len);
    let total: usize = lengths.iter().sum();
    let sequences: Vec<Sequence> = lengths
        .iter()
        .enumerate()
        .map(|(i, &l)| Sequence {
            id: i as i64,
            ids: (0..l as i32).map(|t| (t * 7 + i as i32) % 50_000).collect(),
            mask: (0..l).map(|t| t % 3 > 0).collect(),
        })
        .collect();
    // What the pack stage does between reading and writing: the padded rows' five
    // columns (ids, labels, positions, seq_lens, doc_ids), chunk by chunk.
    let start = Instant::now();
    let rows = pack_lengths(&lengths, seq_len, Algorithm::BestFitDecreasing);
    let mut assembled = 0;
    assemble_all(&sequences, &rows, seq_len, 0, |columns, _| {
        assembled += columns[0].len();
        Ok(())
    })
    .expect("assembled");
    let kiln = start.elapsed().as_secs_f64();
    assert_eq!(assembled, rows.len());
    let start = Instant::now();
    pack_lengths(&lengths, seq_len, Algorithm::BestFitDecreasing);
    let packing = start.elapsed().as_secs_f64();
    let bound = lower_bound(&lengths, seq_len);
    let efficiency = |rows: usize| 100.0 * total as f64 / (rows * seq_len) as f64;
    let file = write_lines(&[serde_json::to_string(&lengths).expect("json")]);
    let kiln_line = format!(
        "kiln {kiln:.2} s (best-fit-decreasing {packing:.2} s, then the stage's padded columns), {} rows, {:.3}% efficient (lower bound {bound} rows)",
        rows.len(),
        efficiency(rows.len())
    );
    let script = TRL_PACK.replace("json.load(open(sys.argv[1]))", "json.loads(json.load(open(sys.argv[1])))");
    match python(&script, file.path().to_str().expect("utf-8 path")) {
        Some((trl_rows, base)) => println!(
            "pack ({n} sequences, log-normal lengths, rows of {seq_len}, best-fit-decreasing): {kiln_line}; TRL pack_dataset {base:.2} s, {trl_rows} rows, {:.3}% efficient: {:.1}x faster",
            efficiency(trl_rows),
            base / kiln
        ),
        None => println!("pack: {kiln_line}; TRL baseline unavailable (pip install trl datasets transformers)"),
    }
}

/// Conversations shaped like the math pipeline's: a system prompt, a question, a worked
/// answer with numbers.
fn conversations(n: usize, seed: u64) -> Vec<Vec<Message>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let words = ["apples", "the", "baker", "sells", "each", "of", "total", "how", "many", "left", "day", "cost"];
    (0..n)
        .map(|_| {
            let mut say = |k: usize| {
                (0..k)
                    .map(|_| {
                        if rng.random_bool(0.3) {
                            rng.random_range(0..10_000).to_string()
                        } else {
                            words[rng.random_range(0..words.len())].to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let question = say(30);
            let answer = say(80);
            vec![
                Message::new("system", "Please reason step by step."),
                Message::new("user", &question),
                Message::new("assistant", &answer),
            ]
        })
        .collect()
}

fn bench_tokenize() {
    let n = 100_000;
    let chats = conversations(n, 5);
    let texts: Vec<String> = chats.iter().map(|c| Template::Chatml.render(c).text).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let params = tokenizer_train::Params { vocab_size: 2048, ..Default::default() };
    let tokenizer = tokenizer_train::train(&params, &texts[..5000]).expect("trained");
    std::fs::create_dir_all(dir.path().join("tok")).expect("dir");
    tokenizer_file::save(&tokenizer, &dir.path().join("tok")).expect("saved");
    let input = testing::chats(&dir.path().join("chats"), &chats);

    let start = Instant::now();
    let encoded = tokenizer.encode_batch(texts.clone(), false).expect("encoded");
    let base = start.elapsed().as_secs_f64();
    let tokens: usize = encoded.iter().map(|e| e.get_ids().len()).sum();
    drop(encoded);

    let inputs = vec![("data", input), ("tokenizer", testing::files(&dir.path().join("tok"), "tokenizer"))];
    let start = Instant::now();
    let report = testing::run::<Tokenize>("", inputs, &dir.path().join("out"), 0).expect("tokenized");
    let kiln = start.elapsed().as_secs_f64();
    assert_eq!(report.metrics["tokens"].as_u64(), Some(tokens as u64));
    println!(
        "tokenize ({n} conversations, {tokens} tokens): stage (Parquet in, ids + masks, Parquet out) {kiln:.2} s = {:.0} tokens/s; encode_batch alone {base:.2} s = {:.0} tokens/s: the stage runs at {:.0}% of encode_batch",
        tokens as f64 / kiln,
        tokens as f64 / base,
        100.0 * base / kiln
    );
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("kiln data benchmarks ({threads} threads)");
    if std::env::var_os("ONLY_PACK").is_none() {
        bench_tokenize();
    }
    bench_pack();

    let n = 20_000;
    let docs = texts(n, 1);
    let ids: Vec<i64> = (0..n as i64).collect();
    let start = Instant::now();
    let removed = find_duplicates(&ids, &docs, None, &Params { exact: false, ..Params::default() }, 7);
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
    let hits = find_overlaps(&train, &eval, 13, kiln_stages::decontaminate::Tokens::Words);
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
