//! Certificates: reading them ([`inspect`]), making keys, self-signed certificates and requests
//! ([`keys`]), and the `cert` kind.

pub mod acme;
pub mod inspect;
pub mod keys;
pub mod kind;
