//! What systemd knows of a unit, read in-process over its own D-Bus socket.
//!
//! A converged host's check of a `service` must not cost a process: `systemctl show` is a
//! fork, an exec and a bus connection to ask four properties. As root, systemd answers on
//! `/run/systemd/private` (the socket `systemctl` itself uses as root: peer to peer, no bus
//! daemon, no `Hello`), so tend speaks the few bytes of D-Bus this needs: EXTERNAL
//! authentication by uid, then one `org.freedesktop.DBus.Properties.Get` per property,
//! pipelined. Only the types those replies carry are understood (`s`, `b`); anything else is an
//! error, and the caller asks `systemctl` instead — the bus is a fast path, never the authority
//! on what it could not read.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// systemd's private socket (root only).
pub(crate) const PRIVATE_SOCKET: &str = "/run/systemd/private";

/// A reply larger than this is not one of ours: refused rather than buffered.
const MAX_MESSAGE: usize = 1 << 20;

/// One property's value, as far as this client reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `s` (and `o`).
    Str(String),
    /// `b`.
    Bool(bool),
}

/// The values of `props` of the unit's `org.freedesktop.systemd1.Unit` interface, in order.
/// Asking loads the unit into systemd's memory if it was not (as `systemctl show` does); a
/// unit with no file answers `LoadState` `not-found`.
pub(crate) async fn unit_properties(
    unit: &str,
    props: &[&str],
    limit: Duration,
) -> io::Result<Vec<Value>> {
    tokio::time::timeout(limit, ask(PRIVATE_SOCKET, unit, props))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "systemd did not answer"))?
}

async fn ask(socket: &str, unit: &str, props: &[&str]) -> io::Result<Vec<Value>> {
    let mut s = UnixStream::connect(socket).await?;
    let uid = rustix::process::geteuid().as_raw().to_string();
    let hex = crate::host::hex(uid.as_bytes());
    s.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
        .await?;
    let answer = read_line(&mut s).await?;
    if !answer.starts_with("OK ") {
        return Err(protocol(format!("authentication refused: {answer}")));
    }
    let path = unit_path(unit);
    let mut out = b"BEGIN\r\n".to_vec();
    for (i, prop) in props.iter().enumerate() {
        out.extend(get_call(i as u32 + 1, &path, prop));
    }
    s.write_all(&out).await?;

    let mut values: Vec<Option<Value>> = vec![None; props.len()];
    while values.iter().any(Option::is_none) {
        let reply = read_message(&mut s).await?;
        let Some(serial) = reply.reply_serial else {
            continue; // a signal: not for us
        };
        let Some(slot) = values.get_mut((serial as usize).wrapping_sub(1)) else {
            continue;
        };
        match reply.kind {
            METHOD_RETURN => *slot = Some(reply.variant()?),
            ERROR => {
                return Err(protocol(format!(
                    "{}: {}",
                    reply.error_name.clone().unwrap_or_default(),
                    reply.error_text().unwrap_or_default()
                )))
            }
            _ => {}
        }
    }
    Ok(values.into_iter().flatten().collect())
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

async fn read_line(s: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(protocol("systemd closed the connection".into()));
        }
        line.push(byte[0]);
        if line.len() > 512 {
            return Err(protocol("authentication answer too long".into()));
        }
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// sd-bus's object path of a unit: `/org/freedesktop/systemd1/unit/` and the name with every
/// byte but letters (and digits after the first) as `_xx`.
fn unit_path(unit: &str) -> String {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    if unit.is_empty() {
        p.push('_');
    }
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

/// Little-endian marshalling, alignment counted from the start of the buffer.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend(v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend(s.as_bytes());
        self.buf.push(0);
    }
    fn signature(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend(s.as_bytes());
        self.buf.push(0);
    }
    /// A header field: `(code, variant)` of a string-like type.
    fn field(&mut self, code: u8, sig: &str, value: &str) {
        self.pad(8);
        self.buf.push(code);
        self.signature(sig);
        if sig == "g" {
            self.signature(value);
        } else {
            self.string(value);
        }
    }
}

/// `Properties.Get("org.freedesktop.systemd1.Unit", prop)` on `path`.
fn get_call(serial: u32, path: &str, prop: &str) -> Vec<u8> {
    let mut body = Writer::default();
    body.string("org.freedesktop.systemd1.Unit");
    body.string(prop);

    let mut m = Writer::default();
    m.buf.extend([b'l', METHOD_CALL, 0, 1]);
    m.u32(body.buf.len() as u32);
    m.u32(serial);
    m.u32(0); // the fields' length, filled in below
    let start = m.buf.len();
    m.field(1, "o", path);
    m.field(2, "s", "org.freedesktop.DBus.Properties");
    m.field(3, "s", "Get");
    m.field(6, "s", "org.freedesktop.systemd1");
    m.field(8, "g", "ss");
    let len = (m.buf.len() - start) as u32;
    m.buf[12..16].copy_from_slice(&len.to_le_bytes());
    m.pad(8);
    m.buf.extend(body.buf);
    m.buf
}

/// A message read back: its kind, the header fields this client uses, and its body.
struct Message {
    kind: u8,
    big_endian: bool,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    signature: String,
    /// The whole message, so that alignment is counted from its start.
    bytes: Vec<u8>,
    body_start: usize,
}

async fn read_message(s: &mut UnixStream) -> io::Result<Message> {
    let mut fixed = [0u8; 16];
    s.read_exact(&mut fixed).await?;
    let big_endian = match fixed[0] {
        b'l' => false,
        b'B' => true,
        other => return Err(protocol(format!("bad endianness byte {other:#x}"))),
    };
    let word = |at: usize| {
        let b = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let body_len = word(4) as usize;
    let fields_len = word(12) as usize;
    let body_start = (16 + fields_len).next_multiple_of(8);
    let total = body_start + body_len;
    if total > MAX_MESSAGE {
        return Err(protocol(format!("a {total}-byte message")));
    }
    let mut bytes = vec![0u8; total];
    bytes[..16].copy_from_slice(&fixed);
    s.read_exact(&mut bytes[16..]).await?;

    let mut m = Message {
        kind: fixed[1],
        big_endian,
        reply_serial: None,
        error_name: None,
        signature: String::new(),
        bytes,
        body_start,
    };
    let mut r = Reader {
        m: &m,
        pos: 16,
        end: 16 + fields_len,
    };
    let (mut reply_serial, mut error_name, mut signature) = (None, None, String::new());
    while r.pos < r.end {
        r.align(8)?;
        let code = r.byte()?;
        let sig = r.signature()?;
        match sig.as_str() {
            "s" | "o" => {
                let v = r.string()?;
                if code == 4 {
                    error_name = Some(v);
                }
            }
            "g" => {
                let v = r.signature()?;
                if code == 8 {
                    signature = v;
                }
            }
            "u" => {
                let v = r.u32()?;
                if code == 5 {
                    reply_serial = Some(v);
                }
            }
            other => return Err(protocol(format!("header field of type {other}"))),
        }
    }
    m.reply_serial = reply_serial;
    m.error_name = error_name;
    m.signature = signature;
    Ok(m)
}

impl Message {
    fn body(&self) -> Reader<'_> {
        Reader {
            m: self,
            pos: self.body_start,
            end: self.bytes.len(),
        }
    }

    /// The body of a `Get` reply: one variant.
    fn variant(&self) -> io::Result<Value> {
        if self.signature != "v" {
            return Err(protocol(format!("a reply of signature {}", self.signature)));
        }
        let mut r = self.body();
        match r.signature()?.as_str() {
            "s" | "o" => Ok(Value::Str(r.string()?)),
            "b" => Ok(Value::Bool(r.u32()? != 0)),
            other => Err(protocol(format!("a property of type {other}"))),
        }
    }

    /// An error's message, when it has one.
    fn error_text(&self) -> Option<String> {
        self.signature
            .starts_with('s')
            .then(|| self.body().string().ok())
            .flatten()
    }
}

struct Reader<'a> {
    m: &'a Message,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.pos + n > self.end {
            return Err(protocol("a truncated message".into()));
        }
        let s = &self.m.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn align(&mut self, a: usize) -> io::Result<()> {
        let next = self.pos.next_multiple_of(a);
        self.take(next - self.pos).map(|_| ())
    }
    fn byte(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        self.align(4)?;
        let big = self.m.big_endian;
        let b: [u8; 4] = self.take(4)?.try_into().expect("four bytes");
        Ok(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn string(&mut self) -> io::Result<String> {
        let n = self.u32()? as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?; // the terminating NUL
        Ok(s)
    }
    fn signature(&mut self) -> io::Result<String> {
        let n = self.byte()? as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_are_escaped_as_sd_bus_does() {
        // The values `systemctl show -p Id --value`'s object paths have (busctl tree).
        assert_eq!(
            unit_path("docker.service"),
            "/org/freedesktop/systemd1/unit/docker_2eservice"
        );
        assert_eq!(
            unit_path("getty@tty1.service"),
            "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice"
        );
        assert_eq!(
            unit_path("1x-y.service"),
            "/org/freedesktop/systemd1/unit/_31x_2dy_2eservice"
        );
    }

    /// A fake systemd on a socket: checks the bytes of the calls it gets (as `busctl
    /// --verbose` prints them) and answers as systemd 252 does, one reply per call, in an
    /// order other than the calls'.
    #[tokio::test]
    async fn properties_are_read_from_pipelined_replies() {
        let dir = tempfile::tempdir().expect("test set-up");
        let sock = dir.path().join("private");
        let listener = tokio::net::UnixListener::bind(&sock).expect("test set-up");
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.expect("test set-up");
            let mut auth = Vec::new();
            while !auth.ends_with(b"\r\n") {
                auth.push(c.read_u8().await.expect("test set-up"));
            }
            let uid = rustix::process::geteuid().as_raw().to_string();
            let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
            assert_eq!(auth, format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes());
            c.write_all(b"OK 0123456789abcdef\r\n")
                .await
                .expect("test set-up");
            let mut begin = [0u8; 7];
            c.read_exact(&mut begin).await.expect("test set-up");
            assert_eq!(&begin, b"BEGIN\r\n");
            let want = [
                get_call(1, &unit_path("a.service"), "ActiveState"),
                get_call(2, &unit_path("a.service"), "NeedDaemonReload"),
            ];
            for w in &want {
                let mut got = vec![0u8; w.len()];
                c.read_exact(&mut got).await.expect("test set-up");
                assert_eq!(&got, w);
            }
            // A signal first, then the replies in reverse order.
            c.write_all(&reply(4, None, "v", &variant_s("ignored")))
                .await
                .expect("test set-up");
            c.write_all(&reply(
                METHOD_RETURN,
                Some(2),
                "v",
                &[1, b'b', 0, 0, 1, 0, 0, 0],
            ))
            .await
            .expect("test set-up");
            c.write_all(&reply(METHOD_RETURN, Some(1), "v", &variant_s("active")))
                .await
                .expect("test set-up");
        });
        let got = ask(
            sock.to_str().expect("test set-up"),
            "a.service",
            &["ActiveState", "NeedDaemonReload"],
        )
        .await
        .expect("test set-up");
        server.await.expect("test set-up");
        assert_eq!(got, [Value::Str("active".into()), Value::Bool(true)]);
    }

    #[tokio::test]
    async fn an_error_reply_is_an_error_with_its_name() {
        let dir = tempfile::tempdir().expect("test set-up");
        let sock = dir.path().join("private");
        let listener = tokio::net::UnixListener::bind(&sock).expect("test set-up");
        tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.expect("test set-up");
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                line.push(c.read_u8().await.expect("test set-up"));
            }
            c.write_all(b"OK 0123456789abcdef\r\n")
                .await
                .expect("test set-up");
            let mut body = Writer::default();
            body.string("Access denied");
            let err = reply_named(
                ERROR,
                Some(1),
                Some("org.freedesktop.DBus.Error.AccessDenied"),
                "s",
                &body.buf,
            );
            c.write_all(&err).await.expect("test set-up");
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest).await;
        });
        let e = ask(
            sock.to_str().expect("test set-up"),
            "a.service",
            &["ActiveState"],
        )
        .await
        .expect_err("an error reply");
        assert_eq!(
            e.to_string(),
            "org.freedesktop.DBus.Error.AccessDenied: Access denied"
        );
    }

    fn variant_s(s: &str) -> Vec<u8> {
        let mut w = Writer::default();
        w.signature("s");
        w.string(s);
        w.buf
    }

    fn reply(kind: u8, serial: Option<u32>, sig: &str, body: &[u8]) -> Vec<u8> {
        reply_named(kind, serial, None, sig, body)
    }

    fn reply_named(
        kind: u8,
        serial: Option<u32>,
        error: Option<&str>,
        sig: &str,
        body: &[u8],
    ) -> Vec<u8> {
        let mut m = Writer::default();
        m.buf.extend([b'l', kind, 1, 1]);
        m.u32(body.len() as u32);
        m.u32(77);
        m.u32(0);
        let start = m.buf.len();
        if let Some(s) = serial {
            m.pad(8);
            m.buf.push(5);
            m.signature("u");
            m.u32(s);
        }
        if let Some(e) = error {
            m.field(4, "s", e);
        }
        m.field(8, "g", sig);
        let len = (m.buf.len() - start) as u32;
        m.buf[12..16].copy_from_slice(&len.to_le_bytes());
        m.pad(8);
        m.buf.extend(body);
        m.buf
    }
}
