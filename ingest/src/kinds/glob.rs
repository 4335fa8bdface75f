//! Path patterns of the `file` and `folder` selectors: `*` and `?` within one path segment,
//! `**` across segments, `[abc]`/`[!a-z]` classes and `{a,b}` alternatives; matching ignores
//! case and lets `*` match dotfiles (the Python integration's `GLOBSTAR|IGNORECASE|DOTGLOB`).

/// Whether `text` is a pattern rather than a literal path.
pub(crate) fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '[', ']', '{', '}'])
}

/// A compiled pattern, matched against paths without a leading `/`.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    /// The pattern as configured (for `__pattern`).
    pub(crate) source: String,
    /// Lower-cased alternatives, each split into segments (`{a,b}` expanded).
    alternatives: Vec<Vec<String>>,
}

/// Expands `{a,b}` alternatives (not nested), lower-cased.
fn expand(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_lowercase()];
    };
    let Some(close) = pattern[open..].find('}').map(|c| c + open) else {
        return vec![pattern.to_lowercase()];
    };
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    body.split(',')
        .flat_map(|choice| expand(&format!("{head}{choice}{tail}")))
        .collect()
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        let trimmed = pattern.trim().trim_matches('/');
        Glob {
            source: pattern.to_string(),
            alternatives: expand(trimmed)
                .into_iter()
                .map(|p| p.split('/').map(String::from).collect())
                .collect(),
        }
    }

    /// Whether `path` (with or without a leading `/`) matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let lower = path.trim_matches('/').to_lowercase();
        let segments: Vec<&str> = lower.split('/').collect();
        self.alternatives.iter().any(|pattern| {
            let pattern: Vec<&str> = pattern.iter().map(String::as_str).collect();
            match_segments(&pattern, &segments)
        })
    }

    /// The literal folder before the first pattern segment (`src/*/docs` → `/src`) and how deep
    /// a listing under it must go: one level when only the last segment is a pattern.
    pub(crate) fn base(&self) -> (String, bool) {
        let trimmed = self.source.trim().trim_matches('/');
        let segments: Vec<&str> = trimmed.split('/').collect();
        let literal = segments.iter().take_while(|s| !is_glob(s)).count();
        let base = format!("/{}", segments[..literal].join("/"));
        let one_level = literal + 1 == segments.len() && !segments[literal..].contains(&"**");
        (base, !one_level)
    }
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                match_segment(first.as_bytes(), segment.as_bytes())
                    && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*`, `?` and `[...]` within one segment.
fn match_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| match_segment(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && match_segment(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&b| b == b']') else {
                return text.first() == Some(&b'[') && match_segment(rest, &text[1..]);
            };
            let Some((&c, text_rest)) = text.split_first() else {
                return false;
            };
            let (negate, class) = match rest[..close].split_first() {
                Some((b'!' | b'^', class)) => (true, class),
                _ => (false, &rest[..close]),
            };
            let mut found = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    found |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    found |= class[i] == c;
                    i += 1;
                }
            }
            found != negate && match_segment(&rest[close + 1..], text_rest)
        }
        Some((&b, rest)) => text.first() == Some(&b) && match_segment(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_globstar_ignorecase_dotglob() {
        let cases = [
            ("**/*.md", "docs/README.md", true),
            ("**/*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("src/*/docs", "src/a/docs", true),
            ("src/*/docs", "src/a/b/docs", false),
            ("src/**/docs", "src/a/b/docs", true),
            ("**/*.yaml", ".config/settings.yaml", true),
            ("*.JSON", "service.json", true),
            ("{port.yml,service.json}", "service.json", true),
            ("deploy/values.y?ml", "deploy/values.yaml", true),
            ("[ps]*.yml", "port.yml", true),
            ("[!p]*.yml", "port.yml", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(path),
                expected,
                "{pattern} {path}"
            );
        }
    }

    #[test]
    fn the_base_is_the_literal_prefix() {
        assert_eq!(Glob::new("src/*/docs").base(), ("/src".into(), true));
        assert_eq!(Glob::new("docs/*.md").base(), ("/docs".into(), false));
        assert_eq!(Glob::new("**/*.md").base(), ("/".into(), true));
        assert_eq!(Glob::new("*").base(), ("/".into(), false));
        assert!(is_glob("a/*") && !is_glob("a/b.md"));
    }
}
