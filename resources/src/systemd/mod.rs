//! systemd: the `service` kind ([`service`]) and the `systemctl` calls it makes ([`systemctl`]).

mod bus;
pub mod service;
pub mod systemctl;
mod unit_files;
