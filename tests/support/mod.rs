//! What the black-box tests share: the one app builder ([`app`]) and waiting with a deadline
//! ([`wait`]). The platform-neutral chat driver is `driver.rs` beside them, included by the
//! files that drive chat platforms (it needs the fakes).
#![allow(dead_code)]

pub mod app;
pub mod fakes;
pub mod files;
pub mod runbooks;
pub mod wait;
