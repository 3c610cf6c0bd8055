//! Host handles. A [`Probe`] can only read the host; a [`Mutate`] can also change it.
//!
//! `tend plan` only ever constructs a `Probe`, so a dry run cannot change the host by
//! construction: no provider can reach a writing method without a `Mutate`, and the engine makes
//! one only in apply mode. Every method takes the path *as the manifest names it* and resolves
//! it under the root (`--root DIR`) from a directory fd, component by component, following no
//! symlink another user could have planted (`walk`); every operation after that acts on the fds
//! the resolution opened. Every error names the operation and the path.
//!
//! One room per job: `probe` (reading, the directory-fd cache), `walk` (resolving a path
//! component by component), `mutate` (writing: atomic, batched, modes, owners, removal), `backup`,
//! `link` (symlinks, sysctl), `outside` (tend's own files outside the root), `tree` (fd walks that set owners), `state_file` (tend's own private
//! files), `lock` (the run lock that mints a `Mutate`), `error`, `fmt`.

// This module is the filesystem seam: the std::fs calls and the Mutate constructor live here.
#![allow(clippy::disallowed_methods)]

mod backup;
mod error;
mod fmt;
mod link;
mod lock;
mod mutate;
mod outside;
mod probe;
mod state_file;
mod tree;
mod walk;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

pub use backup::{BackupEntry, BackupStore};
pub use error::{HostError, HostResult};
pub use fmt::{fmt_mode, hex, mode_of, sha256_hex};
pub use lock::{LockError, OutputWriter, RunLock};
pub use mutate::*;
pub use outside::{read_opened, read_unfollowed, Unread};
pub use probe::*;
pub use state_file::*;
pub use tree::OtherWriter;
use walk::{components, kind_word, Dir, Walker};

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Seek;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hex_and_sha256_are_lower_case_and_zero_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff, 0xa5]), "000ff0ffa5");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_sized_read_gets_the_whole_file_whatever_size_it_was_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        for content in [&b""[..], b"x", b"hello\n", &[7u8; 100_000][..]] {
            fs::write(&p, content).expect("w");
            let f = File::open(&p).expect("open");
            // The size fstat gave, a size from before it grew, and one from before it shrank.
            for told in [content.len() as u64, 0, 3, content.len() as u64 + 10] {
                let f = f.try_clone().expect("clone");
                (&f).seek(io::SeekFrom::Start(0)).expect("seek");
                assert_eq!(read_sized(&f, told).expect("read"), content, "told {told}");
            }
        }
    }

    #[test]
    fn a_user_symlink_among_the_parents_is_refused_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("protected")).expect("mkdir");
        fs::write(root.join("protected/config"), "secret").expect("w");
        fs::create_dir(root.join("u")).expect("mkdir");
        std::os::unix::fs::symlink("/protected", root.join("u/app")).expect("ln");
        std::os::unix::fs::lchown(root.join("u/app"), Some(65534), Some(65534)).expect("chown");
        let m = Mutate::new(Probe::new(root, root.join("state")));
        let err = m
            .set_mode(Path::new("/u/app/config"), 0o666)
            .expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("u/app is a symlink owned by uid 65534"),
            "{msg}"
        );
        let err = m.read(Path::new("/u/app/config")).expect_err("read too");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(
            fs::metadata(root.join("protected/config"))
                .expect("m")
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
    }

    #[test]
    fn roots_symlinks_are_followed_inside_the_root_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("run")).expect("mkdir");
        fs::create_dir_all(root.join("var")).expect("mkdir");
        // As every Debian root has: /var/run -> /run (absolute, resolved inside the root).
        std::os::unix::fs::symlink("/run", root.join("var/run")).expect("ln");
        let m = Mutate::new(Probe::new(root, root.join("state")));
        m.write_atomic(Path::new("/var/run/x.pid"), b"1", Attrs::default())
            .expect("write through the root's own link");
        assert_eq!(fs::read(root.join("run/x.pid")).expect("r"), b"1");
        // A relative link climbing out is clamped at the root.
        std::os::unix::fs::symlink("../../../../../../run", root.join("var/up")).expect("ln");
        assert_eq!(
            m.read(Path::new("/var/up/x.pid")).expect("read"),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let p = Probe::new(root, root.join("state"));
        let err = p.read(Path::new("/pipe")).expect_err("fifo");
        assert!(err.to_string().contains("it is a FIFO"), "{err}");
    }

    #[test]
    fn created_parents_get_0755_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let m = Mutate::new(Probe::new(root, root.join("state")));
        m.create_parents(Path::new("/a/b/c")).expect("parents");
        for d in ["a", "a/b"] {
            let mode = fs::metadata(root.join(d)).expect("m").permissions().mode();
            assert_eq!(mode & 0o7777, 0o755, "{d}");
        }
    }

    #[test]
    fn real_paths_stay_under_the_root() {
        let p = Probe::new("/sandbox", "/sandbox/var/lib/tend");
        assert_ne!(
            p.fingerprint(b"x"),
            Probe::new("/", "/").fingerprint(b"x"),
            "ephemeral keys differ"
        );
        assert_eq!(
            p.real(Path::new("/etc/motd")),
            PathBuf::from("/sandbox/etc/motd")
        );
        assert_eq!(
            p.real(Path::new("/../../etc/passwd")),
            PathBuf::from("/sandbox/etc/passwd")
        );
        assert_eq!(p.real(Path::new("/a/../b")), PathBuf::from("/sandbox/b"));
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Mutate::new(Probe::new(dir.path(), dir.path().join("state")));
        m.write_atomic(
            Path::new("/f"),
            b"one",
            Attrs {
                mode: Some(0o640),
                ..Attrs::default()
            },
        )
        .expect("write");
        m.write_atomic(
            Path::new("/f"),
            b"two",
            Attrs {
                mode: Some(0o600),
                ..Attrs::default()
            },
        )
        .expect("rewrite");
        assert_eq!(fs::read(dir.path().join("f")).expect("read"), b"two");
        let meta = fs::metadata(dir.path().join("f")).expect("meta");
        assert_eq!(mode_of(&meta), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn ids_resolve_from_the_roots_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("etc")).expect("mkdir");
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n",
        )
        .expect("w");
        let p = Probe::new(dir.path(), dir.path().join("state"));
        assert_eq!(p.uid("www-data").expect("uid"), 33);
        assert_eq!(p.uid("1234").expect("numeric"), 1234);
        let err = p.uid("nobody-here").expect_err("unknown user");
        assert!(
            err.to_string().contains("no user named \"nobody-here\""),
            "{err}"
        );
    }
}
