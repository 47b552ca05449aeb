use super::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn pki(client_alpn: &[&[u8]]) -> Pki {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(vec![der.clone()], key, &provider).unwrap();
    let server =
        crate::tls::termination::server_config(Arc::new(OneCert(Arc::new(certified)))).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = client_alpn.iter().map(|p| p.to_vec()).collect();
    Pki {
        server,
        client: Arc::new(client),
    }
}

type Client = tokio_rustls::client::TlsStream<TcpStream>;

/// A server `TlsStream` and a tokio-rustls client connected to it over loopback TCP.
async fn connected(pki: &Pki) -> (TlsStream<TcpStream>, Client) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = pki.server.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        TlsStream::accept(tcp, UnbufferedServerConnection::new(config).unwrap()).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = tokio_rustls::TlsConnector::from(pki.client.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    (server.await.unwrap().unwrap(), client)
}

fn buffers(s: &TlsStream<TcpStream>) -> (usize, usize, usize) {
    (
        s.incoming.capacity(),
        s.plaintext.bytes.capacity(),
        s.outgoing.bytes.capacity(),
    )
}

/// Writes `bytes` on `from` and flushes while reading as many from `to`; what `to` read.
async fn carry(
    from: &mut (impl AsyncWriteExt + Unpin),
    to: &mut (impl AsyncReadExt + Unpin),
    bytes: &[u8],
) -> Vec<u8> {
    let mut got = vec![0u8; bytes.len()];
    let ((), ()) = tokio::join!(
        async {
            from.write_all(bytes).await.unwrap();
            from.flush().await.unwrap();
        },
        async {
            to.read_exact(&mut got).await.unwrap();
        }
    );
    got
}

#[tokio::test]
async fn bytes_cross_both_ways_and_an_idle_stream_holds_no_buffer() {
    let pki = pki(&[b"h2", b"http/1.1"]);
    let (mut server, mut client) = connected(&pki).await;
    assert_eq!(server.connection().alpn_protocol(), Some(&b"h2"[..]));
    assert!(!server.connection().is_handshaking());

    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    client.flush().await.unwrap();
    let mut head = [0u8; 18];
    server.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"GET / HTTP/1.1\r\n\r\n");

    // More than one write's worth (`MAX_WRITE`) and many records, both ways.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let received = carry(&mut server, &mut client, &big).await;
    assert!(received == big, "the client got other bytes than were sent");
    let got = carry(&mut client, &mut server, &big).await;
    assert!(got == big, "the server read other bytes than were sent");

    // Idle: everything read and written, so no buffer is kept.
    assert_eq!(buffers(&server), (0, 0, 0));
}

#[tokio::test]
async fn close_notify_and_a_bare_tcp_close_both_end_the_read() {
    let pki = pki(&[b"http/1.1"]);
    let (mut server, mut client) = connected(&pki).await;
    assert_eq!(server.connection().alpn_protocol(), Some(&b"http/1.1"[..]));
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap(); // close_notify, then FIN
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");

    let (mut server, client) = connected(&pki).await;
    // FIN without `close_notify` (the tickets the client never read stay unread, so the
    // socket is not closed, which would send a reset instead).
    let mut tcp = client.into_inner().0;
    tcp.shutdown().await.unwrap();
    let mut got = Vec::new();
    assert_eq!(server.read_to_end(&mut got).await.unwrap(), 0);
}

#[tokio::test]
async fn the_server_says_close_notify_on_shutdown() {
    let pki = pki(&[]);
    let (mut server, mut client) = connected(&pki).await;
    assert_eq!(server.connection().alpn_protocol(), None);
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    // tokio-rustls reports a close without `close_notify` as an error: this is a clean end.
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
}

#[tokio::test]
async fn what_is_not_tls_is_refused() {
    let pki = pki(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let conn = UnbufferedServerConnection::new(pki.server.clone()).unwrap();
    let err = TlsStream::accept(tcp, conn).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

    // A client that connects and leaves before its hello.
    let mut gone = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    gone.shutdown().await.unwrap();
    let conn = UnbufferedServerConnection::new(pki.server.clone()).unwrap();
    let err = TlsStream::accept(tcp, conn).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
}

#[tokio::test]
async fn a_forged_record_after_the_handshake_is_an_error_not_plaintext() {
    let pki = pki(&[]);
    let (mut server, client) = connected(&pki).await;
    let (mut tcp, _) = client.into_inner();
    // An application-data record of the right shape whose tag cannot verify.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend([0x55; 0x40]);
    tcp.write_all(&record).await.unwrap();
    let mut buf = [0u8; 64];
    let err = server.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
}

#[tokio::test]
async fn a_refused_handshake_tells_the_client_why() {
    // The client only speaks a protocol the server does not: rustls refuses the hello with
    // `no_application_protocol`, and the client must receive that alert, not a reset.
    let pki = pki(&[b"not-http"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = pki.server.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        TlsStream::accept(tcp, UnbufferedServerConnection::new(config).unwrap()).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = tokio_rustls::TlsConnector::from(pki.client.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    let Err(client_error) = client else {
        panic!("the handshake must fail")
    };
    let client_error = client_error.to_string();
    assert!(
        client_error.contains("NoApplicationProtocol"),
        "the client saw {client_error}"
    );
    let server_error = server.await.unwrap().unwrap_err();
    assert_eq!(server_error.kind(), io::ErrorKind::InvalidData);
}
