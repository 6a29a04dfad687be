//! Math401's kinds of expression, read from the query itself (the file has no category
//! field): the groups of its paper, so accuracy can be reported per kind.

/// The kind of a Math401 query: `euler`, `trigonometry`, `logarithm`, `irrational`,
/// `power`, `expression` (several operations), `division`, `multiplication`,
/// `addition_subtraction`.
pub fn family(query: &str) -> &'static str {
    let q = query.to_lowercase();
    let has_word = |w: &str| {
        q.match_indices(w).any(|(i, _)| {
            let before = q[..i].chars().next_back();
            let after = q[i + w.len()..].chars().next();
            !before.is_some_and(char::is_alphabetic) && !after.is_some_and(char::is_alphabetic)
        })
    };
    if q.contains("iπ") || q.contains("i*π") {
        "euler"
    } else if ["sin", "cos", "tan"].iter().any(|f| q.contains(f)) {
        "trigonometry"
    } else if q.contains("log") || has_word("ln") {
        "logarithm"
    } else if q.contains('π') || has_word("pi") || has_word("e") {
        "irrational"
    } else if q.contains("**") || q.contains('^') {
        "power"
    } else {
        let body = q.trim_end_matches(['=', ' ']).trim();
        // Binary operators: a sign right after an opening or at the start is a number's.
        let mut operators = 0;
        let mut previous: Option<char> = None;
        for c in body.chars().filter(|c| !c.is_whitespace()) {
            let unary = matches!(c, '-' | '+') && previous.is_none_or(|p| "(+-*/×÷".contains(p));
            if "+-*/×÷".contains(c) && !unary {
                operators += 1;
            }
            previous = Some(c);
        }
        if operators > 1 {
            "expression"
        } else if body.contains(['/', '÷']) {
            "division"
        } else if body.contains(['*', '×']) {
            "multiplication"
        } else {
            "addition_subtraction"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_fall_into_the_papers_groups() {
        for (query, kind) in [
            ("e^(iπ)+1=", "euler"),
            ("10+(-3)=", "addition_subtraction"),
            ("-6-(-2)=", "addition_subtraction"),
            ("0.0069+(-0.86)=", "addition_subtraction"),
            ("62×42=", "multiplication"),
            ("16÷83=", "division"),
            ("50/95=", "division"),
            ("2**3=", "power"),
            ("7.3947**2.5384=", "power"),
            ("e+pi=", "irrational"),
            ("7/π=", "irrational"),
            (" ( 44 + 97) * 61 * 65=", "expression"),
            ("sin(-0.5π)=", "trigonometry"),
            ("log_2(8)=", "logarithm"),
            ("ln(e^2)=", "logarithm"),
        ] {
            assert_eq!(family(query), kind, "{query}");
        }
    }
}
