//! The client runtime: the native-protocol connection and the session that drives the sans-IO client state
//! (`crate::client`) over it.
//!
//! ```text
//! CLI / program ─▶ session::run_local (one glommio executor) ─▶ Session: lock the key dir, load state
//!   ─▶ conn::ClientConn (WebSocket, HELLO) ◀─▶ relay: SUBSCRIBE, FETCH, PUBLISH, deliveries ─▶ persist state
//!   SUBSCRIBEs one at a time through subscribe_queue (OVERLOADED ─▶ back-off); errors in session_error
//! ```
//! The load generator reuses [`conn`] for its thousands of connections.

pub mod conn;
pub mod session;
pub mod session_error;
pub mod subscribe_queue;
