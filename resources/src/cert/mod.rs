//! Certificates: reading them ([`inspect`]), making keys, self-signed certificates and requests
//! ([`keys`]), and the `cert` kind.

pub mod inspect;
pub mod keys;
