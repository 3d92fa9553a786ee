//! Local stand-ins for the products Cordon talks to, each checking the documented protocol
//! and able to fail on demand (tests and `make demo`).
pub mod duo;
pub mod http;
pub mod servicenow;
pub mod smtp;
pub mod soar;
pub mod webhook;

use std::{
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// Accepts connections until `stop` is set, handing each to `f`. The listener is polled
/// (non-blocking, every 20 ms) rather than woken by a connection of our own: a stand-in
/// may live in a network namespace the thread that stops it is not in.
pub(crate) fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    mut f: impl FnMut(TcpStream),
) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                if conn.set_nonblocking(false).is_ok() {
                    f(conn);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
