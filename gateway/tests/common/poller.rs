//! A raw long-polling client (`/ws-visitor/poll`, `/ws-admin/poll`) for end-to-end tests.

#![allow(dead_code)]

use super::{call, Gateway};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A polling client: the session id and the last event index seen.
pub struct Poller {
    pub http: reqwest::Client,
    pub url: String,
    pub sid: String,
    pub cursor: u64,
    pub welcome: Value,
}

impl Poller {
    /// Opens a session at `path` (`/ws-visitor/poll?...`).
    pub async fn open(gw: &Gateway, path: &str) -> Poller {
        let http = reqwest::Client::new();
        let (status, _, body) = call(&http, reqwest::Method::POST, &gw.http(path), None, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["cursor"], 1, "{body}");
        let welcome = body["events"][0].clone();
        assert_eq!(welcome["type"], "welcome", "{body}");
        let url = gw.http(path.split('?').next().unwrap());
        Poller {
            http,
            url,
            sid: body["sid"].as_str().unwrap().to_string(),
            cursor: 1,
            welcome,
        }
    }

    pub async fn get_at(&self, cursor: u64) -> (u16, Value) {
        let url = format!("{}?sid={}&cursor={cursor}", self.url, self.sid);
        let (status, _, body) = call(&self.http, reqwest::Method::GET, &url, None, &[]).await;
        (status, body)
    }

    /// One GET from the current cursor; advances it and returns the events.
    pub async fn poll(&mut self) -> Vec<Value> {
        let (status, body) = self.get_at(self.cursor).await;
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().unwrap().clone();
        let cursor = body["cursor"].as_u64().unwrap();
        assert_eq!(cursor, self.cursor + events.len() as u64, "{body}");
        self.cursor = cursor;
        events
    }

    /// Polls until an event matches `pred` (10 s at most), returning every event seen.
    pub async fn poll_until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen.extend(self.poll().await);
            if seen.iter().any(&pred) {
                return seen;
            }
        }
        panic!("no matching event within 10 s; saw {seen:?}");
    }

    pub async fn post(&self, body: String) -> (u16, Value) {
        let url = format!("{}?sid={}", self.url, self.sid);
        let (status, _, body) =
            call(&self.http, reqwest::Method::POST, &url, Some(body), &[]).await;
        (status, body)
    }

    /// Submits one command and returns its answer.
    pub async fn request(&self, command: Value) -> Value {
        let (status, body) = self.post(command.to_string()).await;
        assert_eq!(status, 200, "{body}");
        body["answers"][0].clone()
    }
}
