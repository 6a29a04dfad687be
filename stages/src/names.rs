//! "Did you mean" for names a user misspelled: kinds, stages, parameters, inputs.

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 3) && d < c.len().max(name.len()))
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

/// `. Did you mean `x`?` or nothing.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(name, candidates).map(|c| format!(". Did you mean `{c}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_near_names() {
        assert_eq!(did_you_mean("tokenise", ["tokenize", "pack"]), Some("tokenize"));
        assert_eq!(did_you_mean("sq_len", ["seq_len", "algorithm"]), Some("seq_len"));
        assert_eq!(did_you_mean("zzz", ["tokenize", "pack"]), None);
    }
}
