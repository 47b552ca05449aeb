//! A plain TCP connection taken out of Pingora's L4 stream as a bare tokio `TcpStream`.
//!
//! Pingora's stream keeps, for the connection's life, a 512-byte write buffer
//! (`crate::server`'s `edge_l4_buffers`), its struct and a socket digest, about 1 KB that a
//! WebSocket or our TLS stream, with buffers of their own, never use (docs/benchmarks.md, "A
//! WebSocket on the bare socket"). The socket is duplicated; the caller then drops Pingora's
//! stream (flushed, nothing read ahead: the edge has no L4 read buffer) with its descriptor.

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use std::io;

/// Pingora's L4 stream under `stream`, if it is one (not TLS, not already wrapped).
pub fn as_l4(stream: &Stream) -> Option<&L4Stream> {
    stream.as_any().downcast_ref::<L4Stream>()
}

/// A second, non-blocking tokio handle on `l4`'s socket.
pub fn duplicate(l4: &L4Stream) -> io::Result<tokio::net::TcpStream> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the descriptor belongs to `l4`, which is alive (borrowed) for this call.
    let fd = unsafe { BorrowedFd::borrow_raw(l4.as_raw_fd()) };
    let tcp = std::net::TcpStream::from(fd.try_clone_to_owned()?);
    tcp.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(tcp)
}
