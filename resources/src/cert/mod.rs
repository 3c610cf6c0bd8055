//! Certificates: reading them ([`inspect`]), making keys, self-signed certificates and requests
//! ([`keys`]), and the `cert` kind.

pub(crate) mod acme;
pub(crate) mod inspect;
pub(crate) mod keys;
pub(crate) mod kind;
