//! The manifest's parsed tree, kept in the state directory between runs.
//!
//! A fleet host applies the same manifest every half hour; parsing its TOML is the largest
//! single cost of a no-op run (a third of a 1000-file plan's instructions). The tree `raw::parse`
//! makes is a pure function of the manifest's bytes — spans, keys, unrendered strings; no
//! variable, fact or secret has touched it — so it is stored keyed by the manifest's sha256 and
//! decoded instead of parsed while the manifest is unchanged. Anything unexpected (another
//! hash, another format, a truncated or untrusted file) is simply not used: the manifest is
//! parsed, and an apply stores the new tree. Only apply writes it (plan writes nothing), after
//! the manifest loaded and under the run lock.
//!
//! The format: a magic line, the sha256 (hex) line, then the entries, each number little-endian:
//! strings as `u32` length and bytes, spans as two `u32`, values as a tag byte and their payload.

use std::path::Path;

use tend_resources::spec::{Entry, Spanned, Text, Value};

/// The file in the state directory.
pub const FILE: &str = "manifest-tree.bin";

/// Version 2 keeps octal integers apart (tag 6): a version 1 tree, from before, is parsed anew.
const MAGIC: &[u8] = b"tend manifest tree 2\n";

/// Nesting deeper than this is not decoded (TOML's own parser stops far sooner).
const MAX_DEPTH: usize = 128;

/// The tree stored for the manifest whose sha256 is `sha256`, when there is one.
pub fn read(path: &Path, sha256: &str) -> Option<Vec<Entry>> {
    let bytes = match tend_resources::host::read_private_file(path) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("not using the stored manifest tree: {e}");
            return None;
        }
    };
    decode(&bytes, sha256)
}

/// The bytes to store for `tree`, parsed from the manifest whose sha256 is `sha256`.
pub fn encode(sha256: &str, tree: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(sha256.as_bytes());
    out.push(b'\n');
    entries(&mut out, tree);
    out
}

fn u32_(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn str_(out: &mut Vec<u8>, s: &str) {
    u32_(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn span(out: &mut Vec<u8>, s: &std::ops::Range<usize>) {
    u32_(out, s.start);
    u32_(out, s.end);
}

fn entries(out: &mut Vec<u8>, es: &[Entry]) {
    u32_(out, es.len());
    for e in es {
        str_(out, &e.key);
        span(out, &e.key_span);
        spanned(out, &e.value);
    }
}

fn spanned(out: &mut Vec<u8>, v: &Spanned) {
    span(out, &v.span);
    match &v.value {
        Value::Str(t) => {
            out.push(0);
            str_(out, &t.value);
        }
        Value::Int(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Octal(i) => {
            out.push(6);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bool(b) => out.extend_from_slice(&[3, u8::from(*b)]),
        Value::Array(items) => {
            out.push(4);
            u32_(out, items.len());
            for i in items {
                spanned(out, i);
            }
        }
        Value::Table(es) => {
            out.push(5);
            entries(out, es);
        }
    }
}

fn decode(bytes: &[u8], sha256: &str) -> Option<Vec<Entry>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let rest = rest.strip_prefix(sha256.as_bytes())?;
    let rest = rest.strip_prefix(b"\n")?;
    let mut r = Reader { bytes: rest, at: 0 };
    let tree = r.entries(0)?;
    (r.at == rest.len()).then_some(tree)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u32_(&mut self) -> Option<usize> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    }
    fn u64_(&mut self) -> Option<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }
    fn str_(&mut self) -> Option<String> {
        let n = self.u32_()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn span(&mut self) -> Option<std::ops::Range<usize>> {
        Some(self.u32_()?..self.u32_()?)
    }
    /// A count of things at least `min` bytes each: never more than the bytes left could hold,
    /// so a bad count cannot make a huge allocation.
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.u32_()?;
        (n.checked_mul(min)? <= self.bytes.len() - self.at).then_some(n)
    }
    fn entries(&mut self, depth: usize) -> Option<Vec<Entry>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let n = self.count(4 + 8 + 8 + 1)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Entry {
                key: self.str_()?,
                key_span: self.span()?,
                value: self.spanned(depth + 1)?,
            });
        }
        Some(out)
    }
    fn spanned(&mut self, depth: usize) -> Option<Spanned> {
        if depth > MAX_DEPTH {
            return None;
        }
        let span = self.span()?;
        let value = match self.take(1)?[0] {
            0 => Value::Str(Text {
                value: self.str_()?,
                sensitive: false,
            }),
            1 => Value::Int(self.u64_()? as i64),
            6 => Value::Octal(self.u64_()? as i64),
            2 => Value::Float(f64::from_bits(self.u64_()?)),
            3 => Value::Bool(self.take(1)?[0] != 0),
            4 => {
                let n = self.count(8 + 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.spanned(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => Value::Table(self.entries(depth + 1)?),
            _ => return None,
        };
        Some(Spanned { span, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::raw;

    /// Every manifest shipped, and one with each kind of value: the stored tree decodes to
    /// exactly what parsing gives (compared through its encoding, which covers every field).
    #[test]
    fn a_stored_tree_decodes_to_what_parsing_gives() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let mut sources = vec![
            "a = 1\nb = -2.5\nc = true\nd = [1, \"x\", [false]]\n[t.u]\ne = { f = \"g\" }\nh = 1979-05-27T07:32:00Z\n[[arr]]\nx = 0x1f\ny = 0o755\n".to_string(),
        ];
        for dir in [here.clone(), here.join("examples")] {
            for f in std::fs::read_dir(&dir).expect("manifests") {
                let p = f.expect("entry").path();
                if p.extension().is_some_and(|e| e == "toml") {
                    sources.push(std::fs::read_to_string(&p).expect("read"));
                }
            }
        }
        assert!(sources.len() > 3);
        for src in sources {
            let sha = tend_resources::host::sha256_hex(src.as_bytes());
            let tree = raw::parse(&src).expect("parses");
            let bytes = encode(&sha, &tree);
            let back = decode(&bytes, &sha).expect("decodes");
            assert_eq!(encode(&sha, &back), bytes);
        }
    }

    #[test]
    fn another_hash_a_truncation_or_a_bad_count_is_not_used() {
        let src = "[file.a]\npath = \"/a\"\ncontent = \"x\"\n";
        let sha = tend_resources::host::sha256_hex(src.as_bytes());
        let bytes = encode(&sha, &raw::parse(src).expect("parses"));
        assert!(decode(&bytes, &"0".repeat(64)).is_none());
        for cut in [0, MAGIC.len(), bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], &sha).is_none(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode(&long, &sha).is_none(), "trailing bytes");
        // The top-level count claims four billion entries: refused before any allocation.
        let mut huge = bytes[..MAGIC.len() + 65].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge, &sha).is_none());
    }
}
