//! Docker compose's `.env` files, read exactly as compose v2 reads them (compose-go's `dotenv`
//! package, rules in `tests/fixtures/README` terms: quoting, escapes, inline comments, `export`,
//! multi-line values, `${VAR}` expansion, duplicates), and edited without disturbing any other
//! byte.
//!
//! - [`parse`](mod@parse): the file into [`Statement`]s that remember where their key and value sit;
//! - [`expand`]: compose's variable substitution (`$VAR`, `${VAR:-default}`, …);
//! - [`write`](mod@write): the quoting that makes compose read a value back exactly, and in-place edits.

pub mod expand;
pub mod parse;
pub mod write;

pub use parse::{evaluate, parse, Body, Document, ParseError, Statement};
pub use write::{apply_edits, quote, Edits};
