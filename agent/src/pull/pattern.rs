//! OpenSSH's pattern lists (`match.c`), which the allowed signers file uses for principals and
//! `namespaces=`: comma-separated globs with `*` and `?`, each possibly negated with `!`; a
//! negated match refuses the whole list, whatever else matches. Case-sensitive, as sshsig asks.

/// OpenSSH copies each sub-pattern into a 1024-byte buffer and calls a longer one no match.
const MAX_SUB: usize = 1023;

/// Whether `s` matches the glob `pattern` (`*` any run, `?` any one byte; bytes, not
/// characters, as OpenSSH compares them). A set of NFA states: linear in each input, no
/// backtracking however many stars a hostile line holds.
pub(super) fn matches(s: &[u8], pattern: &[u8]) -> bool {
    let m = pattern.len();
    if m == 0 {
        return s.is_empty();
    }
    let closure = |states: &mut Vec<bool>| {
        for i in 0..m {
            if states[i] && pattern[i] == b'*' {
                states[i + 1] = true;
            }
        }
    };
    let mut states = vec![false; m + 1];
    states[0] = true;
    closure(&mut states);
    let mut next = vec![false; m + 1];
    for &c in s {
        next.iter_mut().for_each(|n| *n = false);
        for i in 0..m {
            if !states[i] {
                continue;
            }
            match pattern[i] {
                b'*' => next[i] = true,
                p if p == b'?' || p == c => next[i + 1] = true,
                _ => {}
            }
        }
        closure(&mut next);
        std::mem::swap(&mut states, &mut next);
        if !states.iter().any(|&s| s) {
            return false;
        }
    }
    states[m]
}

/// How a string stands against a pattern list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListMatch {
    /// No sub-pattern matched.
    None,
    /// A sub-pattern matched and no negated one did.
    Positive,
    /// A negated sub-pattern matched: the list refuses the string.
    Negated,
}

/// `match_pattern_list(string, pattern, 0)`: the sub-patterns in order; the first negated
/// match decides at once.
pub(super) fn match_list(s: &[u8], list: &[u8]) -> ListMatch {
    let mut positive = false;
    let mut i = 0;
    while i < list.len() {
        let negated = list[i] == b'!';
        if negated {
            i += 1;
        }
        let start = i;
        while i < list.len() && list[i] != b',' {
            i += 1;
        }
        if i - start >= MAX_SUB {
            return ListMatch::None;
        }
        let sub = &list[start..i];
        if i < list.len() {
            i += 1;
        }
        if matches(s, sub) {
            if negated {
                return ListMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        ListMatch::Positive
    } else {
        ListMatch::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_openssh_does() {
        for (s, p, want) in [
            ("git", "git", true),
            ("git", "gi?", true),
            ("git", "*", true),
            ("", "*", true),
            ("", "", true),
            ("git", "", false),
            ("git", "g*t", true),
            ("gt", "g*?t", false),
            ("git", " git", false),
            ("a*b", "a\\*b", false),
            ("abcabc", "*abc", true),
        ] {
            assert_eq!(matches(s.as_bytes(), p.as_bytes()), want, "{s:?} ~ {p:?}");
        }
    }

    #[test]
    fn a_negated_match_refuses_the_whole_list() {
        use ListMatch::*;
        for (s, list, want) in [
            ("git", "file,git", Positive),
            ("git", "file, git", None),
            ("git", "!file,*", Positive),
            ("git", "*,!git", Negated),
            ("!ops", "!ops", None),
            ("ops", "!ops,ops", Negated),
            ("git", "", None),
            ("git", ",git", Positive),
        ] {
            assert_eq!(
                match_list(s.as_bytes(), list.as_bytes()),
                want,
                "{s:?} in {list:?}"
            );
        }
        let long = format!("{},git", "x".repeat(2000));
        assert_eq!(match_list(b"git", long.as_bytes()), None);
    }
}
