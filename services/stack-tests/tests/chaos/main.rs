//! The resilience ("chaos") suite of issue #6: the compose stack, built from
//! our images, hurt the ways production will hurt it, and checked from
//! outside. Each test starts its own stack (a named compose project on free
//! ports) and removes it, volumes included, also when it fails.
//!
//!   cargo test --release -p stack-tests --test chaos -- --nocapture
//!
//! Figures for docs/resilience.md are printed as `scenario N figures: ...`.

mod cluster;
mod common;
mod hostile;
mod kill9;
mod outages;
mod sites;
