//! End-to-end: the compose stack, built from our images, started the way a
//! user starts it, checked from outside the way a user looks at it.

mod browser;
mod readings;
mod security;
