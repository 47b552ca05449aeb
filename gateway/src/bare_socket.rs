//! A plain TCP connection taken out of Pingora's L4 stream as a bare tokio `TcpStream`.
//!
//! Pingora's stream keeps, for the connection's life, a 512-byte write buffer
//! (`crate::server`'s `edge_l4_buffers`), its struct and a socket digest, about 1 KB that our
//! own streams (`crate::edge_stream`), with buffers that exist only while they hold bytes, never
//! use. The socket is duplicated; the caller's Pingora stream is then dropped (flushed, nothing
//! read ahead: the edge has no L4 read buffer) with its descriptor.

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{SocketDigest, Stream};
use std::io;
use std::sync::Arc;
use tokio::net::TcpStream;

/// A connection off Pingora's stream: the socket and a digest with its addresses.
pub struct Taken {
    /// The duplicated socket.
    pub tcp: TcpStream,
    /// Its digest, the peer's and our address filled in.
    pub socket: Arc<SocketDigest>,
}

/// Takes `stream`'s socket, if it is Pingora's L4 stream (not TLS, not already wrapped) and the
/// descriptor can be duplicated; otherwise gives `stream` back, untouched.
pub fn take(stream: Stream) -> Result<Taken, Stream> {
    let Some(l4) = stream.as_any().downcast_ref::<L4Stream>() else {
        return Err(stream);
    };
    let tcp = match duplicate(l4) {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::debug!(error = %e, "cannot take a connection's socket off Pingora's stream");
            return Err(stream);
        }
    };
    // A digest of our own over the duplicated socket, its addresses already known (no
    // `getpeername` per request).
    let digest = stream.get_socket_digest();
    let socket = {
        use std::os::fd::AsRawFd;
        let socket = SocketDigest::from_raw_fd(tcp.as_raw_fd());
        let _ = socket
            .peer_addr
            .set(digest.as_ref().and_then(|d| d.peer_addr().cloned()));
        let _ = socket
            .local_addr
            .set(digest.as_ref().and_then(|d| d.local_addr().cloned()));
        Arc::new(socket)
    };
    drop(stream);
    Ok(Taken { tcp, socket })
}

/// A second, non-blocking tokio handle on `l4`'s socket.
fn duplicate(l4: &L4Stream) -> io::Result<TcpStream> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the descriptor belongs to `l4`, which is alive (borrowed) for this call.
    let fd = unsafe { BorrowedFd::borrow_raw(l4.as_raw_fd()) };
    let tcp = std::net::TcpStream::from(fd.try_clone_to_owned()?);
    tcp.set_nonblocking(true)?;
    TcpStream::from_std(tcp)
}
