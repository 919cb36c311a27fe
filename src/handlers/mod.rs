//! Request handlers: a request in, a reply out. No sockets, no I/O; the
//! connection loops in [`crate::services`] drive them.

pub mod app;
