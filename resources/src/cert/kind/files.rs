//! The key and certificate files: their mode and owner, and installing a new pair.

use super::*;

impl Cert {
    /// The files on the host and the attributes each must have: the certificate and chain
    /// with the declared `mode` (when given), the key 0600; all with the declared owner and group.
    pub(super) fn attr_targets(&self) -> Vec<(&'static str, &Path, Ownership)> {
        if !matches!(self.location, Location::Host) {
            return Vec::new();
        }
        let key_attrs = Ownership {
            mode: Some(0o600),
            ..self.attrs.clone()
        };
        let mut v = vec![("cert", self.cert.as_path(), self.attrs.clone())];
        if let Some(k) = &self.key {
            v.push(("key", k.as_path(), key_attrs));
        }
        if let Some(c) = &self.chain {
            v.push(("chain", c.as_path(), self.attrs.clone()));
        }
        v
    }

    /// Modes and owners of the certificate's files, as `file` checks them (`cert.mode`,
    /// `key.owner`, …). A key tend wrote is 0600 whatever the manifest says.
    pub(super) fn check_attrs(&self, host: &Probe, drift: &mut Drift) -> Result<(), ResourceError> {
        let audited_key_free =
            matches!(self.provider, Provider::Audit) && self.attrs == Ownership::default();
        if audited_key_free {
            return Ok(());
        }
        for (what, path, want) in self.attr_targets() {
            let Some(meta) = host.metadata(path)? else {
                continue;
            };
            let mut d = Drift::none();
            want.check(host, &meta, &mut d)?;
            for mut c in d.changes {
                c.description = format!("{what} {}: {}", path.display(), c.description);
                c.field = c.field.of(what);
                drift.push(c);
            }
        }
        Ok(())
    }

    pub(super) fn fix_attrs(&self, host: &Mutate, drift: &Drift) -> Result<(), ResourceError> {
        for (what, path, want) in self.attr_targets() {
            let touched: Vec<String> = drift
                .changes
                .iter()
                .filter_map(|c| {
                    c.field
                        .part_attribute()
                        .filter(|(w, _)| *w == what)
                        .map(|(_, f)| f.to_string())
                })
                .collect();
            if touched.is_empty() {
                continue;
            }
            let ids = want.resolve(host)?;
            let touches = |f: &str| touched.iter().any(|t| t == f);
            let uid = ids.uid.filter(|_| touches("owner"));
            let gid = ids.gid.filter(|_| touches("group"));
            let mode = ids
                .mode
                .filter(|_| touches("mode") || uid.is_some() || gid.is_some());
            host.set_attrs(path, uid, gid, mode)?;
        }
        Ok(())
    }

    /// Write the key (0600), the certificate (leaf and chain, as fullchain) and the chain file.
    pub(super) fn install(
        &self,
        host: &Mutate,
        key_pem: &str,
        chain_pem: &str,
    ) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let base = self.attrs.resolve(host)?;
        let key_attrs = Attrs {
            mode: Some(0o600),
            ..base
        };
        let cert_attrs = Attrs {
            mode: Some(base.mode.unwrap_or(0o644)),
            ..base
        };
        // The private key is never kept as a backup: an old key has no use but to leak.
        if let Some(key) = &self.key {
            host.create_parents(key)?;
            host.write_atomic(key, key_pem.as_bytes(), key_attrs)?;
        }
        host.create_parents(&self.cert)?;
        applied.backups.extend(host.replace_file(
            &self.cert,
            chain_pem.as_bytes(),
            cert_attrs,
            0o644,
        )?);
        if let Some(chain) = &self.chain {
            let rest: String = split_pem(chain_pem).into_iter().skip(1).collect();
            let rest = if rest.is_empty() {
                chain_pem.to_string()
            } else {
                rest
            };
            host.create_parents(chain)?;
            applied
                .backups
                .extend(host.replace_file(chain, rest.as_bytes(), cert_attrs, 0o644)?);
        }
        Ok(applied)
    }
}

/// The PEM blocks of a file, each with its END line.
pub(super) fn split_pem(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in pem.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END ") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}
