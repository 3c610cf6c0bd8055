//! `nginx_site`: a reverse-proxy site file rendered from fields ([`render`]), checked with the
//! real `nginx -t` before it replaces the live file ([`validate`]).

pub mod render;
pub mod site;
pub mod validate;
