//! The last touch on every response the edge writes, proxied or answered in-process: HSTS on
//! TLS, and compression ([`crate::compression`]). A Pingora downstream module, so that both the
//! proxy path and `crate::http_util::respond` go through it; the edge's request filter tells it
//! per request what applies ([`EdgeResponse::configure`]).

use crate::compression::{self, Encoder, Encoding};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora::{Error, ErrorType, Result};

/// Per-request state of the module.
#[derive(Default)]
pub struct EdgeResponse {
    /// `Strict-Transport-Security` to add (TLS requests only).
    hsts: Option<&'static str>,
    /// `Some(min_bytes, coding)` when compression applies to this request; the coding is
    /// `None` when the client accepts none (the response still says `Vary: Accept-Encoding`).
    compress: Option<(u64, Option<Encoding>)>,
    encoder: Option<Encoder>,
    finished: bool,
}

/// What applies to one request.
pub struct ResponsePolicy {
    /// The HSTS header value, for a TLS request.
    pub hsts: Option<&'static str>,
    /// Smallest body compressed, when compression applies to this request.
    pub compress_min_bytes: Option<u64>,
    /// The coding the client prefers among those produced.
    pub encoding: Option<Encoding>,
}

impl EdgeResponse {
    /// Sets what applies to this request (called from the edge's request filter, before any
    /// response is written).
    pub fn configure(&mut self, policy: ResponsePolicy) {
        self.hsts = policy.hsts;
        self.compress = policy.compress_min_bytes.map(|min| (min, policy.encoding));
    }
}

#[async_trait::async_trait]
impl HttpModule for EdgeResponse {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        end_of_stream: bool,
    ) -> Result<()> {
        if resp.status.is_informational() {
            // A 100 Continue or a 101 upgrade: the final answer (if any) comes later.
            return Ok(());
        }
        if let Some(hsts) = self.hsts {
            resp.insert_header("Strict-Transport-Security", hsts)?;
        }
        if let Some((min_bytes, encoding)) = self.compress.take() {
            if compression::compressible(resp, min_bytes) {
                compression::add_vary(resp)?;
                if let (false, Some(encoding)) = (end_of_stream, encoding) {
                    self.encoder = Some(encoding.encoder());
                    compression::adjust_header(resp, encoding)?;
                }
            }
        }
        Ok(())
    }

    fn response_body_filter(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<()> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(());
        };
        if self.finished {
            return Ok(());
        }
        let input = body.as_deref().unwrap_or(&[]);
        *body = Some(encoder.encode(input, end).map_err(compression_failed)?);
        self.finished = end;
        Ok(())
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        match self.encoder.as_mut() {
            Some(encoder) if !self.finished => {
                self.finished = true;
                encoder
                    .encode(&[], true)
                    .map(Some)
                    .map_err(compression_failed)
            }
            _ => Ok(None),
        }
    }
}

fn compression_failed(e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::InternalError, "compressing a response", e)
}

/// Makes one [`EdgeResponse`] per request.
pub struct EdgeResponseBuilder;

impl HttpModuleBuilder for EdgeResponseBuilder {
    fn init(&self) -> Module {
        Box::new(EdgeResponse::default())
    }
}

/// The `Strict-Transport-Security` value for `max_age` seconds; `None` for 0 (off). Leaked
/// once at start-up so that every request can share it.
pub fn hsts_value(max_age: u64, include_subdomains: bool) -> Option<&'static str> {
    (max_age > 0).then(|| {
        let value = if include_subdomains {
            format!("max-age={max_age}; includeSubDomains")
        } else {
            format!("max-age={max_age}")
        };
        &*Box::leak(value.into_boxed_str())
    })
}
