//! Which responses are compressed, and how: what Nginx's `gzip on; brotli on;` with a type list
//! did for the main site. gzip (zlib-ng) and brotli are the crates Pingora already builds.
//!
//! A response is compressed when compression is on (`CHAT_COMPRESSION`), the request was not
//! `HEAD` and accepts `br` or `gzip` (brotli preferred), and the response
//! - has a body (not 1xx, 204, 304) and is not a range (206 or `Content-Range`);
//! - has no `Content-Encoding` (the main site compressed it itself, or chose not to);
//! - is of a compressible type (text, JSON, JavaScript, XML, SVG, WebAssembly, fonts that are
//!   not already compressed) and not a stream of events (`text/event-stream` must not wait
//!   for a compressor's buffer);
//! - does not forbid it (`Cache-Control: no-transform`);
//! - announces at least `CHAT_COMPRESSION_MIN_BYTES` (a chunked body of unknown length counts
//!   as large).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use std::io::Write;

/// gzip level 6 and brotli quality 5: Nginx's usual settings, cheap enough for every response.
const GZIP_LEVEL: u32 = 6;
const BROTLI_QUALITY: u32 = 5;
/// Brotli's window (2^19 bytes, as Pingora and ngx_brotli use: the encoder's memory per response
/// grows with it) and internal buffer.
const BROTLI_WINDOW_BITS: u32 = 19;
const BROTLI_BUFFER: usize = 4096;

/// A content coding the gateway produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `br`.
    Brotli,
    /// `gzip`.
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// A streaming encoder.
    pub fn encoder(self) -> Encoder {
        match self {
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                BROTLI_QUALITY,
                BROTLI_WINDOW_BITS,
            ))),
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
        }
    }
}

/// A response body being compressed. Each [`encode`](Encoder::encode) returns what is ready;
/// the last one ends the stream (pingora's own brotli encoder only flushes, which leaves a
/// stream strict decoders refuse).
pub enum Encoder {
    /// gzip.
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// brotli.
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// Ended.
    Done,
}

impl Encoder {
    /// Feeds `input`; with `end`, finishes the stream.
    pub fn encode(&mut self, input: &[u8], end: bool) -> std::io::Result<Bytes> {
        let mut out = match self {
            Encoder::Gzip(gz) => {
                gz.write_all(input)?;
                std::mem::take(gz.get_mut())
            }
            Encoder::Brotli(br) => {
                br.write_all(input)?;
                std::mem::take(br.get_mut())
            }
            Encoder::Done => return Ok(Bytes::new()),
        };
        if end {
            match std::mem::replace(self, Encoder::Done) {
                Encoder::Gzip(gz) => out.extend(gz.finish()?),
                Encoder::Brotli(br) => out.extend(br.into_inner()),
                Encoder::Done => {}
            }
        }
        Ok(Bytes::from(out))
    }
}

/// The coding to use for a request's `Accept-Encoding`: `br` if accepted, else `gzip`, else
/// none. A coding with `q=0` is refused; `*` accepts both.
pub fn choose(accept_encoding: Option<&str>) -> Option<Encoding> {
    let mut brotli = None;
    let mut gzip = None;
    let mut any = None;
    for item in accept_encoding?.split(',').take(32) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let accepted = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .all(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
        match coding.as_str() {
            "br" => brotli = Some(accepted),
            "gzip" | "x-gzip" => gzip = Some(accepted),
            "*" => any = Some(accepted),
            _ => {}
        }
    }
    let any = any.unwrap_or(false);
    if brotli.unwrap_or(any) {
        Some(Encoding::Brotli)
    } else if gzip.unwrap_or(any) {
        Some(Encoding::Gzip)
    } else {
        None
    }
}

/// Whether a `Content-Type` is worth compressing.
pub fn compressible_type(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "text/event-stream" {
        return false;
    }
    mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/ecmascript"
                | "application/xml"
                | "application/wasm"
                | "application/x-font-ttf"
                | "application/vnd.ms-fontobject"
                | "font/ttf"
                | "font/otf"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
        )
}

/// Whether the response may be compressed for a client that accepts it (see the module
/// documentation); the caller has already ruled out `HEAD` and bodiless header-only answers.
pub fn compressible(resp: &ResponseHeader, min_bytes: u64) -> bool {
    let header = |name: &str| resp.headers.get(name).map(|v| v.as_bytes());
    compressible_head(resp.status.as_u16(), header, min_bytes)
}

/// [`compressible`] for a head not (yet) in a `ResponseHeader`: its status and a lookup of its
/// headers (the first of a name).
pub fn compressible_head<'a>(
    status: u16,
    header: impl Fn(&str) -> Option<&'a [u8]>,
    min_bytes: u64,
) -> bool {
    if status < 200 || matches!(status, 204 | 206 | 304) {
        return false;
    }
    if header("content-encoding").is_some() || header("content-range").is_some() {
        return false;
    }
    let text = |name: &str| header(name).and_then(|v| std::str::from_utf8(v).ok());
    if text("cache-control").is_some_and(|cc| cc.to_ascii_lowercase().contains("no-transform")) {
        return false;
    }
    if !text("content-type").is_some_and(compressible_type) {
        return false;
    }
    match text("content-length").map(|cl| cl.trim().parse::<u64>()) {
        Some(Ok(len)) => len >= min_bytes,
        // Unknown length (chunked): worth it.
        None => true,
        Some(Err(_)) => false,
    }
}

/// Whether `Vary` header `values` already cover `Accept-Encoding` (or everything, `*`).
pub fn varies_by_encoding<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    crate::http_util::list_tokens(values)
        .any(|v| v == b"*" || v.eq_ignore_ascii_case(b"accept-encoding"))
}

/// Rewrites the header of a response about to be compressed with `encoding`.
pub fn adjust_header(resp: &mut ResponseHeader, encoding: Encoding) -> pingora::Result<()> {
    resp.remove_header("content-length");
    resp.remove_header("accept-ranges");
    resp.insert_header("Content-Encoding", encoding.token())?;
    // HTTP/2 drops it; HTTP/1.1 needs it once the length is unknown.
    resp.insert_header("Transfer-Encoding", "chunked")?;
    // Another representation: a strong validator becomes weak (what Nginx's gzip does).
    if let Some(etag) = resp.headers.get("etag").map(|v| v.as_bytes().to_vec()) {
        if etag.starts_with(b"\"") {
            resp.insert_header("ETag", [b"W/".as_slice(), &etag].concat())?;
        } else if !etag.starts_with(b"W/") {
            resp.remove_header("etag");
        }
    }
    Ok(())
}

/// Adds `Accept-Encoding` to the response's `Vary` (once).
pub fn add_vary(resp: &mut ResponseHeader) -> pingora::Result<()> {
    let current: Vec<String> = resp
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if current
        .iter()
        .any(|v| v == "*" || v.eq_ignore_ascii_case("accept-encoding"))
    {
        return Ok(());
    }
    let mut all = current;
    all.push("Accept-Encoding".into());
    resp.insert_header("Vary", all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_brotli_and_honours_q_zero() {
        assert_eq!(choose(Some("gzip, deflate, br")), Some(Encoding::Brotli));
        assert_eq!(choose(Some("gzip")), Some(Encoding::Gzip));
        assert_eq!(choose(Some("br;q=0, gzip;q=0.5")), Some(Encoding::Gzip));
        assert_eq!(choose(Some("gzip;q=0")), None);
        assert_eq!(choose(Some("identity")), None);
        assert_eq!(choose(Some("*")), Some(Encoding::Brotli));
        assert_eq!(choose(Some("*, br;q=0")), Some(Encoding::Gzip));
        assert_eq!(choose(None), None);
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn only_compressible_responses_large_enough() {
        let html = ("content-type", "text/html; charset=utf-8");
        assert!(compressible(
            &resp(200, &[html, ("content-length", "5000")]),
            256
        ));
        assert!(compressible(&resp(200, &[html]), 256), "chunked");
        assert!(!compressible(
            &resp(200, &[html, ("content-length", "100")]),
            256
        ));
        assert!(!compressible(&resp(304, &[html]), 256));
        assert!(!compressible(&resp(204, &[html]), 256));
        assert!(!compressible(
            &resp(200, &[html, ("content-encoding", "gzip")]),
            256
        ));
        assert!(!compressible(
            &resp(200, &[html, ("cache-control", "no-transform")]),
            256
        ));
        assert!(!compressible(
            &resp(200, &[("content-type", "image/png")]),
            256
        ));
        assert!(!compressible(
            &resp(200, &[("content-type", "text/event-stream")]),
            256
        ));
        assert!(compressible(
            &resp(200, &[("content-type", "application/ld+json")]),
            256
        ));
        assert!(!compressible(&resp(200, &[]), 256), "no type");
    }

    #[test]
    fn encoders_end_their_streams() {
        use std::io::Read;
        let text = "chat gateway ".repeat(500);
        for encoding in [Encoding::Brotli, Encoding::Gzip] {
            let mut encoder = encoding.encoder();
            let (a, b) = text.as_bytes().split_at(1000);
            let mut out = encoder.encode(a, false).unwrap().to_vec();
            out.extend(encoder.encode(b, false).unwrap());
            out.extend(encoder.encode(&[], true).unwrap());
            assert!(encoder.encode(b"late", true).unwrap().is_empty());
            let mut back = String::new();
            match encoding {
                Encoding::Brotli => brotli::Decompressor::new(&out[..], 4096)
                    .read_to_string(&mut back)
                    .unwrap(),
                Encoding::Gzip => flate2::read::GzDecoder::new(&out[..])
                    .read_to_string(&mut back)
                    .unwrap(),
            };
            assert_eq!(back, text, "{encoding:?}");
            assert!(out.len() < 200, "{encoding:?}: {} bytes", out.len());
        }
    }

    #[test]
    fn headers_are_adjusted() {
        let mut r = resp(
            200,
            &[
                ("content-length", "5000"),
                ("etag", "\"abc\""),
                ("vary", "Origin"),
            ],
        );
        adjust_header(&mut r, Encoding::Gzip).unwrap();
        add_vary(&mut r).unwrap();
        add_vary(&mut r).unwrap();
        assert!(r.headers.get("content-length").is_none());
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert_eq!(r.headers["etag"], "W/\"abc\"");
        assert_eq!(r.headers["vary"], "Origin, Accept-Encoding");
    }
}
