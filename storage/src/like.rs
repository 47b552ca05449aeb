//! `LIKE` patterns from user text, for both stores' searches.

/// `%text%` with `\`, `%` and `_` escaped (for `LIKE … ESCAPE '\'`): the text matches as
/// itself, anywhere.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_are_escaped() {
        assert_eq!(super::like_pattern(r"50%_a\b"), r"%50\%\_a\\b%");
        assert_eq!(super::like_pattern(""), "%%");
    }
}
