//! Compose's variable substitution, as applied to unquoted and double-quoted `.env` values:
//! `$$` is a literal `$`; `$NAME` and `${NAME}` are replaced (unset → empty); `${NAME:-def}`,
//! `${NAME-def}`, `${NAME:+alt}`, `${NAME+alt}`, `${NAME:?msg}`, `${NAME?msg}` with nested
//! expansion in the word; a `$` that starts nothing stays; a malformed `${…}` is an error.

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expand `text`; `lookup` returns a variable's value, `None` when unset.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let close = matching_brace(&chars, i + 1).ok_or_else(|| invalid(text))?;
                let inner: String = chars[i + 2..close].iter().collect();
                out.push_str(
                    &braced(&inner, lookup).map_err(|e| e.unwrap_or_else(|| invalid(text)))?,
                );
                i = close + 1;
            }
            Some(&c) if is_name_start(c) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(&lookup(&name).unwrap_or_default());
                i = j;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn invalid(text: &str) -> String {
    format!("Invalid template: {text:?}")
}

/// Index of the `}` closing the `{` at `open`, counting nested `${`.
fn matching_brace(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The inside of `${…}`. `Err(None)` is a malformed template; `Err(Some(msg))` a `?` error.
fn braced(inner: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Option<String>> {
    let name_len = inner
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(inner.len(), |(i, _)| i);
    let name = &inner[..name_len];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(None);
    }
    let rest = &inner[name_len..];
    let value = lookup(name);
    if rest.is_empty() {
        return Ok(value.unwrap_or_default());
    }
    let (colon, op, word) = match rest.strip_prefix(':') {
        Some(r) => (true, r.chars().next(), r.get(1..).unwrap_or("")),
        None => (false, rest.chars().next(), rest.get(1..).unwrap_or("")),
    };
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let present = if colon { non_empty } else { set };
    let word = || expand(word, lookup).map_err(Some);
    match op {
        Some('-') => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                word()
            }
        }
        Some('+') => {
            if present {
                word()
            } else {
                Ok(String::new())
            }
        }
        Some('?') => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                let msg = word()?;
                Err(Some(format!(
                    "required variable {name} is missing a value: {msg}"
                )))
            }
        }
        _ => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitution_forms() {
        let cases = [
            ("$SET-x", "v-x"),
            ("${SET}", "v"),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${SET:+alt}", "alt"),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET:-${SET:-x}}", "v"),
            ("a $ b $1 ^x$ $}", "a $ b $1 ^x$ $}"),
            ("$${SET}", "${SET}"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &env).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn malformed_and_required() {
        for bad in ["${}", "${ foo}", "${foo }", "${foo!}", "${foo", "${1a}"] {
            assert!(expand(bad, &env).is_err(), "{bad}");
        }
        let err = expand("${UNSET:?need it}", &env).expect_err("required");
        assert_eq!(err, "required variable UNSET is missing a value: need it");
        assert_eq!(expand("${EMPTY?fine}", &env).as_deref(), Ok(""));
    }
}
