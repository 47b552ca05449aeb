//! The main site's response head, parsed once and kept as received: the headers of the client's
//! hop are ranges of the received bytes, written out as they are by the gateway's own HTTP/1.1
//! front (`crate::h1_front`), or turned into Pingora's `ResponseHeader` for Pingora's session.

use super::{upstream_error, HOP_BY_HOP, MAX_HEADERS};
use crate::http_util::list_tokens;
use bytes::{Buf, Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use std::ops::Range;

/// How the main site delimits a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (`HEAD`, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Up to the end of the connection.
    UntilClose,
}

/// A parsed response head of the main site.
pub(super) struct Head {
    pub answer: AnswerHead,
    pub framing: Framing,
    /// The connection may carry another request afterwards.
    pub reusable: bool,
}

/// The head of the client's answer: the main site's status and headers, without those of the
/// main site's hop.
pub(crate) struct AnswerHead {
    status: u16,
    /// The received head (status line and every header).
    raw: Bytes,
    /// The headers kept for the client, in order: name and value, as ranges of `raw`.
    kept: Vec<(Range<usize>, Range<usize>)>,
    /// The body is relayed chunked (`Transfer-Encoding: chunked` for the client's hop).
    chunked: bool,
}

impl AnswerHead {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body goes to the client chunked.
    pub fn chunked(&self) -> bool {
        self.chunked
    }

    /// The headers kept for the client, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.kept
            .iter()
            .map(|(name, value)| (&self.raw[name.clone()], &self.raw[value.clone()]))
    }

    /// The first value of the header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The same head for Pingora's session.
    pub fn to_response_header(&self) -> Result<ResponseHeader> {
        let mut header = ResponseHeader::build(self.status, Some(self.kept.len() + 1))?;
        for (name, value) in self.headers() {
            let name = String::from_utf8_lossy(name).into_owned();
            header.append_header(name, value)?;
        }
        if self.chunked {
            header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(header)
    }
}

/// Parses the answer's head at the start of `buf` (taken out of it), skipping interim (1xx)
/// answers; `None` until it is whole.
pub(super) fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>> {
    loop {
        // Uninitialized: nothing is written per answer beyond the headers found.
        let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            buf,
            &mut headers,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(Error::because(
                    ErrorType::InvalidHTTPHeader,
                    "the main site's response head",
                    e,
                )
                .into_up())
            }
        };
        let code = res.code.unwrap_or(0);
        if http::StatusCode::from_u16(code).is_err() {
            return upstream_error(
                ErrorType::InvalidHTTPHeader,
                "the main site sent an invalid status code",
            );
        }
        if code == 101 {
            return upstream_error(
                ErrorType::InvalidHTTPHeader,
                "the main site switched protocols on a request that asked for none",
            );
        }
        if (100..200).contains(&code) {
            buf.advance(len);
            continue;
        }
        let base = buf.as_ptr() as usize;
        let range = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            start..start + part.len()
        };
        let mut kept = Vec::with_capacity(res.headers.len());
        let mut length: Option<u64> = None;
        let mut chunked = false;
        // `Connection` names more headers of this hop, and may say `close`.
        let connection = res
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"));
        let named: Vec<&[u8]> = list_tokens(connection.map(|h| h.value)).collect();
        let close =
            res.version != Some(1) || named.iter().any(|t| t.eq_ignore_ascii_case(b"close"));
        for h in res.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let parsed = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match (parsed, length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => continue,
                    _ => {
                        return upstream_error(
                            ErrorType::InvalidHTTPHeader,
                            "the main site sent an invalid Content-Length",
                        )
                    }
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only chunked is relayed (what HTTP/1.1 servers send); any other coding: a 502.
                if !h.value.eq_ignore_ascii_case(b"chunked") {
                    return upstream_error(
                        ErrorType::InvalidHTTPHeader,
                        "the main site used a transfer coding other than chunked",
                    );
                }
                chunked = true;
            }
            let of_this_hop = HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n))
                || named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name.as_bytes()));
            if !of_this_hop {
                kept.push((range(name.as_bytes()), range(h.value)));
            }
        }
        let framing = if head_only || code == 204 || code == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let raw = buf.split_to(len).freeze();
        if framing == Framing::Chunked {
            // A body that is chunked has no length, whatever Content-Length says (RFC 9112 §6.3).
            kept.retain(|(name, _)| !raw[name.clone()].eq_ignore_ascii_case(b"content-length"));
        }
        return Ok(Some(Head {
            answer: AnswerHead {
                status: code,
                raw,
                kept,
                chunked: matches!(framing, Framing::Chunked | Framing::UntilClose),
            },
            framing,
            reusable: !close,
        }));
    }
}
