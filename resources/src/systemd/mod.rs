//! systemd: the `service` kind ([`service`]) and the `systemctl` calls it makes ([`systemctl`]).

pub mod service;
pub mod systemctl;
