//! Text normalization for comparing documents: exact duplicates compare NFKC, lowercased,
//! whitespace-collapsed text; n-gram methods compare lowercase words with punctuation
//! removed. Hashes are xxh3 (a specified function), so they are the same on every
//! machine and kiln version.

use unicode_normalization::UnicodeNormalization;
use xxhash_rust::xxh3::xxh3_64;

/// NFKC, lowercase, whitespace collapsed to single spaces, trimmed.
pub fn normalize(text: &str) -> String {
    let folded: String = text.nfkc().collect::<String>().to_lowercase();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lowercase words with punctuation removed (NFKC first), as decontamination and MinHash
/// compare them.
pub fn words(text: &str) -> Vec<String> {
    let folded: String = text.nfkc().collect::<String>().to_lowercase();
    folded
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\'') || c.is_ascii_control())
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Code tokens, for n-grams over programs: identifiers and numbers (lowercased, NFKC)
/// and every punctuation character on its own; whitespace, layout and `#` comments
/// dropped. Unlike `words`, `s[:4]` and `s[4:]` differ, and a copy that was re-indented,
/// re-spaced or re-commented is the same token sequence.
pub fn code_tokens(text: &str) -> Vec<String> {
    let folded: String = text.nfkc().collect::<String>().to_lowercase();
    let mut tokens = Vec::new();
    for line in folded.lines() {
        // A `#` outside a string starts a comment; quotes are tracked per line.
        let mut quote: Option<char> = None;
        let mut current = String::new();
        for c in line.chars() {
            if quote.is_none() && c == '#' {
                break;
            }
            if c == '"' || c == '\'' {
                quote = match quote {
                    Some(q) if q == c => None,
                    None => Some(c),
                    other => other,
                };
            }
            if c.is_alphanumeric() || c == '_' {
                current.push(c);
                continue;
            }
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        }
        if !current.is_empty() {
            tokens.push(current);
        }
    }
    tokens
}

/// 64-bit hash of a text.
pub fn hash(text: &str) -> u64 {
    xxh3_64(text.as_bytes())
}

/// Hashes of the word n-grams of `words` (one per window; none if fewer words than n).
pub fn ngram_hashes(words: &[String], n: usize) -> Vec<u64> {
    if words.len() < n || n == 0 {
        return Vec::new();
    }
    words.windows(n).map(|w| hash(&w.join(" "))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_folds_width_case_and_space() {
        assert_eq!(normalize("  Ｈｅｌｌｏ\tWORLD  \n"), "hello world");
        assert_eq!(words("It's 5 o'clock, Tom!"), ["its", "5", "oclock", "tom"]);
        assert_eq!(ngram_hashes(&words("a b c"), 2).len(), 2);
        assert!(ngram_hashes(&words("a b"), 3).is_empty());
        assert_eq!(hash("abc"), hash("abc"));
    }
}
